package driver

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/shiphold/shiphold/pkg/config"
)

// The driver tells the backend whether the access mode is single-node, so that a second
// node is FAILED_PRECONDITION for single-node modes only.
func TestControllerPublishPassesSingleNodeAccess(t *testing.T) {
	cases := []struct {
		mode csi.VolumeCapability_AccessMode_Mode
		want codes.Code
	}{
		{csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, codes.FailedPrecondition},
		{csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, codes.FailedPrecondition},
		{csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, codes.FailedPrecondition},
		{csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, codes.FailedPrecondition},
		{csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, codes.OK},
		{csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, codes.OK},
	}
	for _, c := range cases {
		t.Run(c.mode.String(), func(t *testing.T) {
			f := newFixture(t, config.Tenants{})
			ctx := context.Background()
			vcap := mountCap(c.mode)
			v, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{vcap}, Parameters: map[string]string{"backend": "isilon"}})
			if err != nil {
				t.Fatal(err)
			}
			publish := func(node string) error {
				_, err := f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.Volume.VolumeId, NodeId: node, VolumeCapability: vcap})
				return err
			}
			if err := publish("node-a@10.0.0.1"); err != nil {
				t.Fatal(err)
			}
			err = publish("node-b@10.0.0.2")
			if c.want == codes.OK && err != nil {
				t.Fatalf("second node refused for %v: %v", c.mode, err)
			}
			if c.want != codes.OK {
				wantCode(t, err, c.want, "node-a")
			}
		})
	}
}

// A publish is one call to a Publisher: it finds the volume itself (NotFound when it is
// gone), so the driver does not read the volume first (on Isilon a GetVolume is several
// PAPI requests per publish).
func TestControllerPublishAsksThePublisherAlone(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	v, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwx)}, Parameters: map[string]string{"backend": "isilon"}})
	if err != nil {
		t.Fatal(err)
	}
	f.nfs.gets.Store(0)
	req := &csi.ControllerPublishVolumeRequest{VolumeId: v.Volume.VolumeId, NodeId: f.d.NodeID(), VolumeCapability: mountCap(rwx)}
	if _, err := f.d.ControllerPublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := f.nfs.gets.Load(); n != 0 {
		t.Fatalf("the publish read the volume %d times before asking the publisher", n)
	}
	if _, err := f.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.Volume.VolumeId}); err != nil {
		t.Fatal(err)
	}
	_, err = f.d.ControllerPublishVolume(ctx, req)
	wantCode(t, err, codes.NotFound, v.Volume.VolumeId)
}
