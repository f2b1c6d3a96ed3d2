package publish

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// A single-node volume published to one node is FAILED_PRECONDITION for every other node
// until it is unpublished there (CSI ControllerPublishVolume), on every backend that keeps
// publish records; the same node may publish again, and a second node may after unpublish.
func TestPublishSingleNodeRefusesSecondNodeOnEveryBackend(t *testing.T) {
	sim := harness.StartOneFS(t)
	backends := []config.Backend{harness.RBDBackend(t, "rbd"), harness.CephFSBackend(t, "cephfs"), sim.Backend(t, "isilon")}
	d := harness.StartDriver(t, &config.Config{Backends: backends}, driver.ModeController)
	ctrl := d.Controller()
	mode := func(m csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
		return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: m},
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}
	}
	rwo := mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	for _, be := range backends {
		t.Run(be.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			v, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-single-" + be.Name, CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20},
				VolumeCapabilities: []*csi.VolumeCapability{rwo}, Parameters: map[string]string{"backend": be.Name, "csi.storage.k8s.io/pvc/namespace": "singletest"}})
			if err != nil {
				t.Fatal(err)
			}
			defer ctrl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.Volume.VolumeId})
			publish := func(node string, vcap *csi.VolumeCapability, ro bool) error {
				_, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.Volume.VolumeId, NodeId: node,
					VolumeCapability: vcap, Readonly: ro, VolumeContext: v.Volume.VolumeContext})
				return err
			}
			unpublish := func(node string) {
				if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.Volume.VolumeId, NodeId: node}); err != nil {
					t.Fatalf("unpublish %s: %v", node, err)
				}
			}
			for i := 0; i < 2; i++ {
				if err := publish(node1, rwo, false); err != nil {
					t.Fatalf("publish to node-1 (try %d): %v", i+1, err)
				}
			}
			for _, vcap := range []*csi.VolumeCapability{rwo, mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER), mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)} {
				ro := vcap.AccessMode.Mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
				if err := publish(node2, vcap, ro); status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("publish %v to node-2 while node-1 holds it: %v, want FAILED_PRECONDITION", vcap.AccessMode.Mode, err)
				}
			}
			unpublish(node1)
			if err := publish(node2, rwo, false); err != nil {
				t.Fatalf("publish to node-2 after node-1 unpublished: %v", err)
			}
			unpublish(node2)
		})
	}
}
