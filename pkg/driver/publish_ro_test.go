package driver

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

// TestPublishReaderOnlyModeIsReadOnly: the attach-detach controller publishes a ReadOnlyMany
// PVC with Readonly false and a MULTI_NODE_READER_ONLY capability; the grant and the publish
// context must be read-only all the same.
func TestPublishReaderOnlyModeIsReadOnly(t *testing.T) {
	testCases := []struct {
		name     string
		mode     csi.VolumeCapability_AccessMode_Mode
		readonly bool
		want     bool
	}{
		{"ROX from the attacher", csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, false, true},
		{"single-node reader", csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, false, true},
		{"RWX read-only PV", rwx, true, true},
		{"RWX", rwx, false, false},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, config.Tenants{})
			ctx := context.Background()
			vol, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "n", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwx)}, Parameters: map[string]string{"backend": "isilon"}})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: vol.Volume.VolumeId, NodeId: f.d.NodeID(), VolumeCapability: mountCap(tc.mode), Readonly: tc.readonly})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.PublishContext[backend.PublishContextReadOnly] == "true"; got != tc.want {
				t.Errorf("publish context read-only %v, want %v (%v)", got, tc.want, resp.PublishContext)
			}
			if got := f.nfs.publishedRO[vol.Volume.VolumeId]; got != tc.want {
				t.Errorf("the backend was asked for a read-only grant: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExpandBlockNeedsTheNode: a block volume's node must be told of a grown image (a loop
// device over rbd-fuse does not follow it by itself), so node expansion stays required.
func TestExpandBlockNeedsTheNode(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	vol, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "b", VolumeCapabilities: []*csi.VolumeCapability{blockCap(rwx)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: vol.Volume.VolumeId,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}, VolumeCapability: blockCap(rwx)})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.NodeExpansionRequired {
		t.Error("ControllerExpandVolume of a block volume: node expansion not required, so the node's loop device keeps the old size")
	}
}

// TestNodeExpandBlockByAGonePodPath: the kubelet expanded a block volume shared by pods over
// time with the publish path of the first pod, deleted long before; the staged device must
// grow all the same, and a missing path without a staging path stays NOT_FOUND.
func TestNodeExpandBlockByAGonePodPath(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	vol, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "b", VolumeCapabilities: []*csi.VolumeCapability{blockCap(rwx)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(t.TempDir(), "staging")
	gone := filepath.Join(t.TempDir(), "publish", "pod-deleted-long-ago")
	resp, err := f.d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: vol.Volume.VolumeId, VolumePath: gone,
		StagingTargetPath: staging, VolumeCapability: blockCap(rwx), CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}})
	if err != nil || resp.CapacityBytes != 2<<30 {
		t.Fatalf("NodeExpandVolume by a gone pod's path with the staging path: %v %v", resp, err)
	}
	_, err = f.d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: vol.Volume.VolumeId, VolumePath: gone,
		VolumeCapability: blockCap(rwx), CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("NodeExpandVolume by a gone path without a staging path: %v, want NotFound", err)
	}
}
