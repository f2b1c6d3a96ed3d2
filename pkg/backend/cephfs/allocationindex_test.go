package cephfs

import (
	"context"
	"fmt"
	"sort"
	"strings"
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

// The readings of tenant usage (every ReadInterval, all of the backend every
// FullReadEvery) and a tenant's full listing read the groups and the plain recorded
// subvolumes through the MDS: at 2,000 subvolumes a full reading asked the single-threaded
// mgr for 2,000 infos and a subvolume list per group, and every create of the time queued
// behind them. The mgr is asked only about what the MDS cannot vouch for: here one
// subvolume with a snapshot and a clone still copying.
func TestUsageReadingsAskTheMgrOnlyAboutTheUnusual(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	var made []*backend.Volume
	for i, tenant := range []string{"team-a", "team-b", "team-a", "team-b", "team-a", "team-b"} {
		req := volReq(fmt.Sprintf("pvc-%d", i), int64(i+1)<<20)
		req.Tenant = tenant
		v, err := c.CreateVolume(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, v)
	}
	plain := func() string { // what the storage holds, as the quota counts it
		var vols []*backend.Volume
		for _, v := range made {
			vols = append(vols, &backend.Volume{ID: v.ID, CapacityBytes: v.CapacityBytes})
		}
		return summary(vols)
	}
	f.mgrCommands()
	readings := map[string]func() ([]*backend.Volume, error){
		"ListAllocations":             func() ([]*backend.Volume, error) { return c.ListAllocations(ctx) },
		"ListTenantAllocations":       func() ([]*backend.Volume, error) { return c.ListTenantAllocations(ctx, "team-a") },
		"ListVolumes of every tenant": func() ([]*backend.Volume, error) { return c.ListVolumes(ctx, "") },
		"AllocationsOf": func() ([]*backend.Volume, error) {
			ids, err := c.AllocationIDs(ctx)
			if err != nil {
				return nil, err
			}
			return c.AllocationsOf(ctx, ids)
		},
	}
	for name, read := range readings {
		got, err := read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cmds := f.mgrCommands(); len(cmds) != 0 {
			t.Errorf("%s of plain recorded subvolumes asked the mgr %q", name, cmds)
		}
		want := plain()
		if name == "ListTenantAllocations" {
			var ofA []*backend.Volume
			for _, v := range made {
				if v.ID.Tenant == "team-a" {
					ofA = append(ofA, &backend.Volume{ID: v.ID, CapacityBytes: v.CapacityBytes})
				}
			}
			want = summary(ofA)
		}
		if s := summary(strip(got)); s != want {
			t.Errorf("%s: %s, want %s", name, s, want)
		}
	}

	// A snapshot, and a clone still copying: the mgr is asked about these two alone, the
	// clone counts 0 bytes.
	if _, err := c.CreateSnapshot(ctx, made[0].ID, "s1", nil, nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	for key, sub := range f.subs {
		if strings.HasSuffix(key, subvolumeName(made[1].ID.Hash)) {
			sub.cloning = 100
			delete(sub.xattrs, recordXattr) // a clone is recorded once its copy is done
		}
	}
	f.mu.Unlock()
	f.mgrCommands()
	got, err := c.ListAllocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if infos := countOf(f.mgrCommands(), "fs subvolume info"); infos != 2 {
		t.Errorf("a reading with a snapshotted subvolume and a clone copying asked for %d infos, want 2", infos)
	}
	made[1].CapacityBytes = 0
	if s, w := summary(strip(got)), plain(); s != w {
		t.Errorf("ListAllocations: %s, want %s", s, w)
	}
}

// strip keeps what the quota counts of each volume: its ID and size.
func strip(vols []*backend.Volume) []*backend.Volume {
	out := make([]*backend.Volume, len(vols))
	for i, v := range vols {
		out[i] = &backend.Volume{ID: v.ID, CapacityBytes: v.CapacityBytes}
	}
	return out
}
