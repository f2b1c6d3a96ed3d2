package isilontest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestDriverRefusesCrossTenantClone: through the CSI socket, a volume of tenant-a cannot
// be made from tenant-b's volume or snapshot (INVALID_ARGUMENT), and tenant-b's files
// appear in no volume of tenant-a.
func TestDriverRefusesCrossTenantClone(t *testing.T) {
	sim, d := startDriver(t)
	cc := d.Controller()
	ctx := ctxT(t)
	create := func(name, tenant string, src *csi.VolumeContentSource) (*csi.CreateVolumeResponse, error) {
		return cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeContentSource: src,
			Parameters:         map[string]string{"backend": "isi", "csi.storage.k8s.io/pvc/namespace": tenant},
			VolumeCapabilities: []*csi.VolumeCapability{mountCap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * mib}})
	}
	b, err := create("pvc-b", "tenant-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	bDir := filepath.Join(sim.Root, strings.TrimPrefix(b.Volume.VolumeContext["exportPath"], "/ifs/"))
	if err := os.WriteFile(filepath.Join(bDir, "secret-of-b.txt"), []byte("tenant-b only"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-b", SourceVolumeId: b.Volume.VolumeId})
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]*csi.VolumeContentSource{
		"volume":   {Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: b.Volume.VolumeId}}},
		"snapshot": {Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}},
	}
	for kind, src := range sources {
		_, err := create("pvc-a-from-b-"+kind, "tenant-a", src)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("tenant-a from tenant-b's %s: %v, want INVALID_ARGUMENT", kind, err)
		}
	}
	_ = filepath.Walk(filepath.Join(sim.Root, "data/shiphold/tenant-a"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == "secret-of-b.txt" {
			t.Errorf("tenant-b's file is in tenant-a's tree: %s", p)
		}
		return nil
	})
	// Within tenant-b the same sources work.
	for kind, src := range sources {
		if _, err := create("pvc-b-from-b-"+kind, "tenant-b", src); err != nil {
			t.Errorf("tenant-b from its own %s: %v", kind, err)
		}
	}
}
