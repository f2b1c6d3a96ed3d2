package rbdtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// TestRBDRealErrorsThroughGRPC drives every error a user can hit through the plugin's
// socket against the real cluster, asserting the CSI code and that the message names what
// to fix.
func TestRBDRealErrorsThroughGRPC(t *testing.T) {
	good := harness.RBDBackend(t, "rbd-real")
	down := harness.RBDBackend(t, "rbd-down")
	down.Section.(*rbd.Config).Monitors = []string{"127.0.0.1:1"}
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{good, down}}, driver.ModeAll)
	ctrl, node := d.Controller(), d.Node()
	vcap := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
	create := func(ctx context.Context, params, secrets map[string]string) error {
		_, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-errors", CapacityRange: &csi.CapacityRange{RequiredBytes: 8 << 20},
			VolumeCapabilities: vcap, Parameters: params, Secrets: secrets})
		return err
	}
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown parameter", func() error {
			return create(ctx(), map[string]string{"backend": "rbd-real", "imageFeature": "layering"}, nil)
		},
			codes.InvalidArgument, "imageFeature"},
		{"unknown backend", func() error { return create(ctx(), map[string]string{"backend": "rbd-typo"}, nil) },
			codes.InvalidArgument, `"rbd-typo"`},
		{"unknown image feature", func() error {
			return create(ctx(), map[string]string{"backend": "rbd-real", "imageFeatures": "layering,warp-drive"}, nil)
		}, codes.InvalidArgument, "warp-drive"},
		{"missing pool", func() error {
			return create(ctx(), map[string]string{"backend": "rbd-real", "pool": "no-such-pool"}, nil)
		},
			codes.InvalidArgument, "no-such-pool"},
		{"secret without userKey", func() error {
			return create(ctx(), map[string]string{"backend": "rbd-real"}, map[string]string{"userID": "admin"})
		}, codes.InvalidArgument, "userKey"},
		{"wrong cephx key", func() error {
			return create(ctx(), map[string]string{"backend": "rbd-real"}, map[string]string{"userID": "admin", "userKey": "AQBSdGhpcyBpcyBub3QgYSBrZXkhISEhISEhISE="})
		}, codes.Unavailable, "cephx"},
		{"malformed volume ID", func() error {
			_, err := ctrl.ControllerExpandVolume(ctx(), &csi.ControllerExpandVolumeRequest{VolumeId: "pvc-123", CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
			return err
		}, codes.NotFound, "pvc-123"},
		{"well-formed ID of a missing image", func() error {
			_, err := ctrl.ValidateVolumeCapabilities(ctx(), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "v1:rbd-real:default:2:0123456789abcdef", VolumeCapabilities: vcap})
			return err
		}, codes.NotFound, "0123456789abcdef"},
		{"stage a malformed ID", func() error {
			_, err := node.NodeStageVolume(ctx(), &csi.NodeStageVolumeRequest{VolumeId: "not/an/id", StagingTargetPath: t.TempDir(), VolumeCapability: vcap[0]})
			return err
		}, codes.NotFound, "not/an/id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v naming %q", err, tc.code, tc.msg)
			}
		})
	}

	t.Run("unreachable monitors answer within the deadline", func(t *testing.T) {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		err := create(c, map[string]string{"backend": "rbd-down"}, nil)
		took := time.Since(start)
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Fatalf("got %v, want UNAVAILABLE or DEADLINE_EXCEEDED", err)
		}
		if took > 4*time.Second {
			t.Fatalf("answered after %v, past the 3 s deadline", took)
		}
		// The healthy backend keeps serving beside the dead one.
		v, err := ctrl.CreateVolume(ctx(), &csi.CreateVolumeRequest{Name: "pvc-errors-ok", CapacityRange: &csi.CapacityRange{RequiredBytes: 8 << 20},
			VolumeCapabilities: vcap, Parameters: map[string]string{"backend": "rbd-real"}})
		if err != nil {
			t.Fatalf("healthy backend beside an unreachable one: %v", err)
		}
		if _, err := ctrl.DeleteVolume(ctx(), &csi.DeleteVolumeRequest{VolumeId: v.Volume.VolumeId}); err != nil {
			t.Fatal(err)
		}
	})
}
