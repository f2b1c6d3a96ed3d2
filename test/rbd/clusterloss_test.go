package rbdtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// unstageBound is how long NodeUnstageVolume may take on a volume whose cluster is gone:
// bounded unmounts of the filesystem and of rbd-fuse, the loop device's detach and the
// daemon's stop, with room.
const unstageBound = 30 * time.Second

// TestRBDRealFuseUnstageAfterClusterLoss stages an ext4 volume over rbd-fuse and a loop
// device through the plugin's socket, leaves data unwritten in the page cache, then kills
// every daemon of its (private) cluster. Unpublish and unstage must answer within their
// bound, report success, and leave nothing of the volume on the node: no mount, no loop
// device, no rbd-fuse.
func TestRBDRealFuseUnstageAfterClusterLoss(t *testing.T) {
	needNode(t)
	pc := harness.StartPrivateCeph(t)
	be := config.Backend{Name: "rbd-loss", Kind: backend.KindRBD, Section: &rbd.Config{Cluster: pc.Cluster, Pool: "rbd", Mounter: rbd.MounterFuse}}
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeAll)
	ctrl, node := d.Controller(), d.Node()
	vcap := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	ctx := ctxT(t, 2*time.Minute)
	vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-cluster-loss", VolumeCapabilities: []*csi.VolumeCapability{vcap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
		Parameters:    map[string]string{backend.ParamBackend: be.Name, backend.ParamPVCNamespace: "team-loss"}})
	if err != nil {
		t.Fatal(err)
	}
	id := vol.Volume.VolumeId
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "pod", "mount")
	// Runs before the cluster's teardown: whatever the plugin left is taken down by force.
	t.Cleanup(func() { harness.ForceNodeCleanup(dir) })
	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: d.Driver.NodeID(), VolumeCapability: vcap})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vcap,
		VolumeContext: vol.Volume.VolumeContext, PublishContext: pub.PublishContext}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target,
		VolumeCapability: vcap, PublishContext: pub.PublishContext}); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("synced "), 1<<14)
	if err := os.WriteFile(filepath.Join(target, "synced"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	syncFs(t, target)
	if got, err := os.ReadFile(filepath.Join(target, "synced")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	// Dirty pages the unmount would have to write through the dead cluster.
	if err := os.WriteFile(filepath.Join(target, "dirty"), bytes.Repeat([]byte("d"), 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	pc.Kill(t)
	t.Log("cluster killed (mon, mgr, osd, mds: SIGKILL)")

	harness.SucceedsWithin(t, "NodeUnpublishVolume", unstageBound, func(ctx context.Context) error {
		_, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
		return err
	})
	unstage := func(ctx context.Context) error {
		_, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
		return err
	}
	harness.SucceedsWithin(t, "NodeUnstageVolume", unstageBound, unstage)
	if left := harness.NodeLeftovers(dir); len(left) > 0 {
		t.Errorf("left on the node after unstage: %q", left)
	}
	harness.SucceedsWithin(t, "NodeUnstageVolume again", unstageBound, unstage)
}
