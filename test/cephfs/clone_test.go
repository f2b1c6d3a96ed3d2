package cephfstest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/pkg/volid"
)

// stageExisting stages a volume made through the backend and returns its mounted directory.
func stageExisting(t *testing.T, d *driver.Driver, v *backend.Volume) string {
	s := staged{id: v.ID.String(), staging: filepath.Join(t.TempDir(), "staging")}
	if _, err := d.NodeStageVolume(ctxT(t), &csi.NodeStageVolumeRequest{VolumeId: s.id, StagingTargetPath: s.staging,
		VolumeCapability: mountCap, VolumeContext: v.Context, PublishContext: attach(t, d, s.id, v.Context)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unstage(t, d, s) })
	return filepath.Join(s.staging, "fs")
}

func TestCephFSRealSnapshotAndClones(t *testing.T) {
	needRoot(t)
	e := needCeph(t)
	d := e.driver(t)
	ctx := ctxT(t)
	src, err := e.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-real-src", Tenant: "team-c", RequiredBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), src.ID, nil) })
	dir := stageExisting(t, d, src)
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := e.ctrl.CreateSnapshot(ctx, src.ID, "snap-real", nil, nil)
	if err != nil || !snap.Ready || snap.CreatedAt.IsZero() {
		t.Fatalf("CreateSnapshot: %+v %v", snap, err)
	}
	t.Cleanup(func() { e.ctrl.DeleteSnapshot(ctxT(t), snap.ID, nil) })
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	other, err := e.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-real-other", Tenant: "team-c", RequiredBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), other.ID, nil) })
	if _, err := e.ctrl.CreateSnapshot(ctx, other.ID, "snap-real", nil, nil); !isCode(err, backend.AlreadyExists) {
		t.Fatalf("same snapshot name on another volume: %v", err)
	}

	fromSnap := e.createRetrying(t, &backend.VolumeRequest{Name: "pvc-real-from-snap", Tenant: "team-c", RequiredBytes: 48 << 20, SourceSnapshot: &snap.ID})
	t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), fromSnap.ID, nil) })
	fromVol := e.createRetrying(t, &backend.VolumeRequest{Name: "pvc-real-from-vol", Tenant: "team-c", RequiredBytes: 32 << 20, SourceVolume: &src.ID})
	t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), fromVol.ID, nil) })
	if fromSnap.CapacityBytes != 48<<20 {
		t.Fatalf("clone size %d", fromSnap.CapacityBytes)
	}
	for name, v := range map[string]struct {
		vol  *backend.Volume
		want string
	}{"from snapshot": {fromSnap, "v1"}, "from volume": {fromVol, "v2"}} {
		got, err := os.ReadFile(filepath.Join(stageExisting(t, d, v.vol), "data"))
		if err != nil || string(got) != v.want {
			t.Fatalf("clone %s reads %q %v, want %q", name, got, err, v.want)
		}
	}
	snaps, err := e.ctrl.ListSnapshots(ctx, &src.ID)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("ListSnapshots: %v %v (the temporary clone snapshot must be gone)", snaps, err)
	}
	// Deleting a volume keeps its snapshots usable.
	if err := e.ctrl.DeleteVolume(ctx, src.ID, nil); err != nil {
		t.Fatalf("DeleteVolume with a snapshot: %v", err)
	}
	late := e.createRetrying(t, &backend.VolumeRequest{Name: "pvc-real-late", Tenant: "team-c", RequiredBytes: 32 << 20, SourceSnapshot: &snap.ID})
	t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), late.ID, nil) })
	if got, err := os.ReadFile(filepath.Join(stageExisting(t, d, late), "data")); err != nil || string(got) != "v1" {
		t.Fatalf("clone of a deleted volume's snapshot: %q %v", got, err)
	}
	if _, err := e.ctrl.GetSnapshot(ctx, snap.ID); err != nil {
		t.Fatalf("GetSnapshot after source delete: %v", err)
	}
	_ = volid.Hash
}
