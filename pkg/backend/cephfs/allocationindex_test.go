package cephfs

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

// TestAllocationIndex: the names come from one subvolume listing per group with no info
// call, and reading them finds what ListAllocations lists: a clone still copying at 0 bytes,
// not a subvolume deleted with its snapshots retained nor a gone one.
func TestAllocationIndex(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	for _, name := range []string{"pvc-1", "pvc-2"} {
		if _, err := c.CreateVolume(ctx, volReq(name, 1<<30)); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	for key, sub := range f.subs {
		if key[len(key)-len(subvolumeName(volid.Hash("pvc-2"))):] == subvolumeName(volid.Hash("pvc-2")) {
			sub.cloning = 100
		}
	}
	f.mu.Unlock()
	f.mgrCommands()

	ids, err := c.AllocationIDs(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("ids %v, %v; want 2", ids, err)
	}
	for _, cmd := range f.mgrCommands() {
		if cmd == "fs subvolume info" {
			t.Fatalf("listing the names asked for a subvolume's info")
		}
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
	if s, w := summary(got), summary(want); s != w || len(got) != 2 {
		t.Fatalf("AllocationsOf: %s\nListAllocations: %s (want 2, one at 0 bytes)", s, w)
	}

	t1, err := c.ListTenantAllocations(ctx, "team-a")
	if s, w := summary(t1), summary(want); err != nil || s != w {
		t.Fatalf("ListTenantAllocations(team-a): %s, %v; want %s", s, err, w)
	}
	if none, err := c.ListTenantAllocations(ctx, "team-b"); err != nil || len(none) != 0 {
		t.Fatalf("ListTenantAllocations(team-b): %s, %v; want none", summary(none), err)
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
