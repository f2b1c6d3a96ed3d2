package driver

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/shiphold/shiphold/pkg/config"
)

// A content source larger than limit_bytes is OUT_OF_RANGE before anything is created: a
// volume made and then refused would never be deleted by the CO.
func TestCreateVolumeOverLimitSourceCreatesNothing(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	params := map[string]string{"backend": "ceph-rbd"}
	caps := []*csi.VolumeCapability{mountCap(rwo)}
	src, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "src", VolumeCapabilities: caps, Parameters: params,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: src.Volume.VolumeId})
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]*csi.VolumeContentSource{
		"snapshot": {Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}},
		"volume":   {Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.Volume.VolumeId}}},
	}
	for name, source := range sources {
		t.Run(name, func(t *testing.T) {
			_, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "clone-" + name, VolumeCapabilities: caps, Parameters: params,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20, LimitBytes: 32 << 20}, VolumeContentSource: source})
			wantCode(t, err, codes.OutOfRange, "limit_bytes")
			if vols, _ := f.rbd.ListVolumes(ctx, ""); len(vols) != 1 {
				t.Fatalf("refused create left %d volumes on the backend, want only the source", len(vols))
			}
		})
	}
}
