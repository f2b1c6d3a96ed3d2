package driver

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

// TestCreateVolumeRefusesAnotherTenantsSource: a clone or restore must come from the
// requesting tenant's own volumes and snapshots, whatever the backend; the driver refuses
// before the backend is asked.
func TestCreateVolumeRefusesAnotherTenantsSource(t *testing.T) {
	for _, be := range []string{"ceph-rbd", "isilon"} {
		t.Run(be, func(t *testing.T) {
			f := newFixture(t, config.Tenants{})
			ctx := context.Background()
			params := func(tenant string) map[string]string {
				return map[string]string{backend.ParamBackend: be, backend.ParamPVCNamespace: tenant}
			}
			src, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "b-data", Parameters: params("tenant-b"),
				VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, CapacityRange: &csi.CapacityRange{RequiredBytes: 10}})
			if err != nil {
				t.Fatal(err)
			}
			snap, err := f.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "b-snap", SourceVolumeId: src.Volume.VolumeId})
			if err != nil {
				t.Fatal(err)
			}
			sources := map[string]*csi.VolumeContentSource{
				"volume":   {Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.Volume.VolumeId}}},
				"snapshot": {Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}},
			}
			fake := map[string]*fakeController{"ceph-rbd": f.rbd, "isilon": f.nfs}[be]
			for kind, source := range sources {
				before := len(fake.vols)
				_, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "a-from-b-" + kind, Parameters: params("tenant-a"),
					VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, CapacityRange: &csi.CapacityRange{RequiredBytes: 10},
					VolumeContentSource: source})
				wantCode(t, err, codes.InvalidArgument, `"tenant-b"`)
				if len(fake.vols) != before {
					t.Fatalf("%s source: the backend created a volume", kind)
				}
				// The same source for its own tenant is fine.
				if _, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "b-from-b-" + kind, Parameters: params("tenant-b"),
					VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, CapacityRange: &csi.CapacityRange{RequiredBytes: 10},
					VolumeContentSource: source}); err != nil {
					t.Fatalf("%s source within the tenant: %v", kind, err)
				}
			}
		})
	}
}
