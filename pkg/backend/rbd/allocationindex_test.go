package rbd

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/tenant"
	"github.com/shiphold/shiphold/pkg/volid"
)

var (
	_ tenant.AllocationIndex        = (*Controller)(nil)
	_ tenant.TenantAllocationLister = (*Controller)(nil)
)

// TestAllocationIndex: the names come from the image directories without an image open, and
// reading them finds what ListAllocations lists: volumes, a recordless image of the pool,
// not another backend's images nor a gone one.
func TestAllocationIndex(t *testing.T) {
	c, f := newFakeController(t)
	other := newController("rbd2", c.cfg, c.storage.Connect)
	ctx := context.Background()
	mustCreate(t, c, volReq("pvc-1", gib))
	mustCreate(t, c, &backend.VolumeRequest{Name: "pvc-2", Tenant: "t2", RequiredBytes: 2 * gib})
	mustCreate(t, other, volReq("theirs", gib))
	io, _ := f.OpenPool("rbd")
	io.SetNamespace("t1")
	io.CreateImage(imageName(volid.Hash("stray")), gib, 1)

	f.resetCalls()
	ids, err := c.AllocationIDs(ctx)
	if err != nil || len(ids) != 4 {
		t.Fatalf("ids %v, %v; want the 4 csi-vol- images", ids, err)
	}
	if n := f.count("OpenImageReadOnly") + f.count("OpenImage"); n != 0 {
		t.Fatalf("listing the names opened %d images", n)
	}
	gone := ids[0]
	gone.Hash = volid.Hash("gone")
	got, err := c.AllocationsOf(ctx, append(ids, gone))
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.ListAllocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s, w := summary(got), summary(want); s != w || len(got) != 3 {
		t.Fatalf("AllocationsOf: %s\nListAllocations: %s (want 3)", s, w)
	}

	var ofT1 []*backend.Volume
	for _, v := range want {
		if v.ID.Tenant == "t1" {
			ofT1 = append(ofT1, v)
		}
	}
	t1, err := c.ListTenantAllocations(ctx, "t1")
	if s, w := summary(t1), summary(ofT1); err != nil || s != w || len(t1) != 2 {
		t.Fatalf("ListTenantAllocations(t1): %s, %v; want %s (the volume and the recordless image)", s, err, w)
	}
}

func summary(vols []*backend.Volume) string {
	var out []string
	for _, v := range vols {
		out = append(out, fmt.Sprint(v.ID, "=", v.CapacityBytes))
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}
