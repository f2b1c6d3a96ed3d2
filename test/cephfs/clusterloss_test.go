package cephfstest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// unstageBound is how long NodeUnstageVolume may take on a volume whose cluster is gone:
// the plugin's bounded unmount, forced and lazy unmounts and the daemon's stop, with room.
const unstageBound = 30 * time.Second

// TestCephFSRealUnstageAfterClusterLoss stages two volumes with ceph-fuse through the
// plugin's socket, one published to a pod and one whose pod has gone (unpublished), then
// kills every daemon of their (private) cluster. Unpublish and unstage must still answer
// within their bound, report success, and leave nothing of either volume on the node: no
// mount, no ceph-fuse. Before the fix the plain unmount of the volume without a pod never
// returned (the test hung until go test's timeout) and its ceph-fuse stayed, ignoring
// SIGTERM.
func TestCephFSRealUnstageAfterClusterLoss(t *testing.T) {
	needRoot(t)
	pc := harness.StartPrivateCeph(t)
	be := config.Backend{Name: "cephfs-loss", Kind: backend.KindCephFS, Section: &cephfs.Config{
		Cluster: pc.Cluster, FSName: fsName, SubvolumeGroupPrefix: "loss-", Mounter: cephfs.MounterFuse}}
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeAll)
	dir := t.TempDir()
	// Runs before the cluster's teardown: whatever the plugin left is taken down by force.
	t.Cleanup(func() { harness.ForceNodeCleanup(dir) })
	inUse := stageWithData(t, d, be.Name, "pvc-in-use", dir)
	idle := stageWithData(t, d, be.Name, "pvc-idle", dir)
	unpublish(t, d, idle)

	pc.Kill(t)
	t.Log("cluster killed (mon, mgr, osd, mds: SIGKILL)")

	harness.SucceedsWithin(t, "NodeUnstageVolume (no pod)", unstageBound, func(ctx context.Context) error { return unstageCall(ctx, d, idle) })
	// kubelet unpublishes, then unstages; each must answer.
	harness.SucceedsWithin(t, "NodeUnpublishVolume", unstageBound, func(ctx context.Context) error { return unpublishCall(ctx, d, inUse) })
	harness.SucceedsWithin(t, "NodeUnstageVolume (after unpublish)", unstageBound, func(ctx context.Context) error { return unstageCall(ctx, d, inUse) })
	if left := harness.NodeLeftovers(dir); len(left) > 0 {
		t.Errorf("left on the node after unstage: %q", left)
	}
	// A retry (the CO's, after a lost answer) finds nothing to do.
	harness.SucceedsWithin(t, "NodeUnstageVolume again", unstageBound, func(ctx context.Context) error { return unstageCall(ctx, d, idle) })
}

// podVolume is a volume staged and published below a test's directory.
type podVolume struct{ id, staging, target string }

// stageWithData creates, stages and publishes a volume through the socket and writes to it.
func stageWithData(t *testing.T, d *harness.Driver, backendName, name, dir string) podVolume {
	t.Helper()
	ctx := ctxT(t)
	vol, err := d.Controller().CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{mountCap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
		Parameters:    map[string]string{backend.ParamBackend: backendName, backend.ParamPVCNamespace: "team-loss"}})
	if err != nil {
		t.Fatal(err)
	}
	v := podVolume{id: vol.Volume.VolumeId, staging: filepath.Join(dir, name, "staging"), target: filepath.Join(dir, name, "pod", "mount")}
	// As the external-attacher does: the publish context names the subvolume's data directory.
	node, err := d.Node().NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := d.Controller().ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.id, NodeId: node.GetNodeId(),
		VolumeCapability: mountCap, VolumeContext: vol.Volume.VolumeContext})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Node().NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging,
		VolumeCapability: mountCap, VolumeContext: vol.Volume.VolumeContext, PublishContext: pathOnly(pub.PublishContext)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Node().NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging,
		TargetPath: v.target, VolumeCapability: mountCap}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.target, "data"), []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(v.target, "data")); err != nil || string(got) != name {
		t.Fatalf("read back: %q %v", got, err)
	}
	if len(fuseFor(v.staging)) != 1 {
		t.Fatalf("ceph-fuse for %s: %v", v.staging, fuseFor(v.staging))
	}
	return v
}

func unpublish(t *testing.T, d *harness.Driver, v podVolume) {
	t.Helper()
	if err := unpublishCall(ctxT(t), d, v); err != nil {
		t.Fatal(err)
	}
}

func unpublishCall(ctx context.Context, d *harness.Driver, v podVolume) error {
	_, err := d.Node().NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target})
	return err
}

func unstageCall(ctx context.Context, d *harness.Driver, v podVolume) error {
	_, err := d.Node().NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging})
	return err
}
