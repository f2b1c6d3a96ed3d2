package rbdtest

import (
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

// TestRBDRealExpandBlockNeedsTheNode: growing a raw block volume's image still asks for node
// expansion: a loop device over rbd-fuse (the node strategy without krbd or nbd) keeps its
// old size until NodeExpandVolume refreshes it, and pods saw 1 GiB after a grow to 2 GiB.
func TestRBDRealExpandBlockNeedsTheNode(t *testing.T) {
	c := needCeph(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "xbl")
	ctx := ctxT(t, time.Minute)
	v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-" + tenant, Tenant: tenant, RequiredBytes: 10 << 20,
		Block: true, MultiNode: true, Parameters: map[string]string{backend.ParamBackend: "rbd-test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctl.DeleteVolume(ctxT(t, time.Minute), v.ID, nil) })
	size, node, err := ctl.ExpandVolume(ctx, v.ID, 20<<20, 0, nil)
	if err != nil || size != 20<<20 {
		t.Fatalf("expand: %d %v", size, err)
	}
	if !node {
		t.Error("expanding a block volume: node expansion not required, so a loop device on the node keeps the old size")
	}
}
