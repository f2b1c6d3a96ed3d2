// Package adopttest adopts objects shiphold did not create (an RBD image, a CephFS
// subvolume, an Isilon directory with its export and quota), each holding data, on the real
// storage, and drives them through the real plugin: staged, published, read back,
// expanded, snapshotted, and deleted where the PV's reclaim policy is Delete.
package adopttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/adopt"
	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func suffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// adoptOn adopts req on the configured backend through pkg/adopt, as shipholdctl import
// does, with the controllers the CLI opens.
func adoptOn(t *testing.T, cfg *config.Config, req adopt.Request) (*backend.Volume, error) {
	t.Helper()
	b, err := registry.Open(cfg, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return adopt.Adopt(ctxT(t), b.Controllers, req)
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, fsType string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

// attached is an adopted volume published, staged and published on the plugin's node.
type attached struct {
	d               *harness.Driver
	id, node        string
	staging, target string
	vcap            *csi.VolumeCapability
}

// attach goes through ControllerPublish, NodeStage and NodePublish as the kubelet would,
// with the volume context of the PV shipholdctl import writes.
func attach(t *testing.T, d *harness.Driver, v *backend.Volume, vcap *csi.VolumeCapability) *attached {
	t.Helper()
	ctx := ctxT(t)
	info, err := d.Node().NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	a := &attached{d: d, id: v.ID.String(), node: info.NodeId, vcap: vcap,
		staging: filepath.Join(t.TempDir(), "staging"), target: filepath.Join(t.TempDir(), "target")}
	pub, err := d.Controller().ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: a.id, NodeId: a.node,
		VolumeCapability: vcap, VolumeContext: v.Context})
	if err != nil {
		t.Fatalf("ControllerPublishVolume %s: %v", a.id, err)
	}
	if _, err := d.Node().NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: a.id, StagingTargetPath: a.staging,
		VolumeCapability: vcap, VolumeContext: v.Context, PublishContext: pub.PublishContext}); err != nil {
		t.Fatalf("NodeStageVolume %s: %v", a.id, err)
	}
	if _, err := d.Node().NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: a.id, StagingTargetPath: a.staging,
		TargetPath: a.target, VolumeCapability: vcap, VolumeContext: v.Context, PublishContext: pub.PublishContext}); err != nil {
		t.Fatalf("NodePublishVolume %s: %v", a.id, err)
	}
	t.Cleanup(func() { a.detach(t) })
	return a
}

// detach undoes attach; run twice, it finds nothing to do.
func (a *attached) detach(t *testing.T) {
	ctx := ctxT(t)
	if _, err := a.d.Node().NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: a.id, TargetPath: a.target}); err != nil {
		t.Errorf("NodeUnpublishVolume: %v", err)
	}
	if _, err := a.d.Node().NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: a.id, StagingTargetPath: a.staging}); err != nil {
		t.Errorf("NodeUnstageVolume: %v", err)
	}
	if _, err := a.d.Controller().ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: a.id, NodeId: a.node}); err != nil {
		t.Errorf("ControllerUnpublishVolume: %v", err)
	}
}

// readBack checks that the legacy data is there through the pod's mount, and writes more.
func (a *attached) readBack(t *testing.T, name, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.target, name))
	if err != nil || string(b) != want {
		t.Fatalf("legacy file %s through the published mount: %q %v, want %q", name, b, err, want)
	}
	if err := os.WriteFile(filepath.Join(a.target, "after-adoption"), []byte("new"), 0o644); err != nil {
		t.Fatalf("write through the published mount: %v", err)
	}
}

// expand grows the volume through the controller (and the node when it asks) to size.
func (a *attached) expand(t *testing.T, size int64) int64 {
	t.Helper()
	ctx := ctxT(t)
	resp, err := a.d.Controller().ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: a.id,
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeCapability: a.vcap})
	if err != nil {
		t.Fatalf("ControllerExpandVolume: %v", err)
	}
	if resp.NodeExpansionRequired {
		_, err := a.d.Node().NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: a.id, VolumePath: a.target,
			StagingTargetPath: a.staging, CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeCapability: a.vcap})
		switch {
		case err != nil && strings.Contains(err.Error(), "CAP_SYS_RESOURCE") && !hasCapSysResource():
			// As test/rbd: online ext4 growth needs a capability this sandbox may drop.
			t.Logf("ext4 online growth refused without CAP_SYS_RESOURCE, as reported: %v", err)
		case err != nil:
			t.Fatalf("NodeExpandVolume: %v", err)
		}
	}
	return resp.CapacityBytes
}

// snapshot takes a snapshot of the volume through the plugin and deletes it again.
func (a *attached) snapshot(t *testing.T) {
	t.Helper()
	ctx := ctxT(t)
	s, err := a.d.Controller().CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: a.id, Name: "snap-" + suffix()})
	if err != nil {
		t.Fatalf("CreateSnapshot of an adopted volume: %v", err)
	}
	if s.Snapshot.SourceVolumeId != a.id || !s.Snapshot.ReadyToUse {
		t.Fatalf("snapshot %+v of %s", s.Snapshot, a.id)
	}
	if _, err := a.d.Controller().DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.Snapshot.SnapshotId}); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
}

func hasCapSysResource() bool {
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(l, "CapEff:"); ok {
			var caps uint64
			fmt.Sscanf(strings.TrimSpace(hex), "%x", &caps)
			return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "CEPH_CONF="+harness.CephConf())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
