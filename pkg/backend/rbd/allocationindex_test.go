package rbd

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

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

// The readings of tenant usage, a full listing and GetVolume read each image's size and
// record from its header, without opening it (an open is about ten round trips: a full
// reading of 15,000 images took 574 s), several at a time; they find what an open finds:
// the volumes at their size, an expanded one at its new size, a recordless image of the
// pool (not a volume), not another backend's image.
func TestReadingsOpenNoImage(t *testing.T) {
	c, f := newFakeController(t)
	other := newController("rbd2", c.cfg, c.storage.Connect)
	ctx := context.Background()
	var want []*backend.Volume
	for i := 0; i < 12; i++ {
		v := mustCreate(t, c, &backend.VolumeRequest{Name: fmt.Sprintf("pvc-%d", i), Tenant: fmt.Sprintf("t%d", i%2), RequiredBytes: int64(i+1) * gib})
		want = append(want, &backend.Volume{ID: v.ID, CapacityBytes: v.CapacityBytes})
	}
	if _, _, err := c.ExpandVolume(ctx, want[3].ID, 40*gib, 0, nil); err != nil {
		t.Fatal(err)
	}
	want[3].CapacityBytes = 40 * gib
	mustCreate(t, other, volReq("theirs", gib))
	io, _ := f.OpenPool("rbd")
	io.SetNamespace("t1")
	io.CreateImage(imageName(volid.Hash("stray")), 3*gib, 1)
	stray := want[1].ID
	stray.Hash = volid.Hash("stray")
	want = append(want, &backend.Volume{ID: stray, CapacityBytes: 3 * gib})

	f.resetCalls()
	f.headerDelay = 5 * time.Millisecond
	all, err := c.ListAllocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := c.AllocationIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	of, err := c.AllocationsOf(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	recordless, err := c.ListRecordless(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed, err := c.ListVolumes(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetVolume(ctx, want[3].ID, nil)
	if err != nil || got.CapacityBytes != 40*gib || got.RequestName != "pvc-3" {
		t.Errorf("GetVolume of the expanded volume: %+v, %v; want 40 GiB, pvc-3", got, err)
	}
	if n := f.count("OpenImageReadOnly") + f.count("OpenImage"); n != 0 {
		t.Errorf("the readings opened %d images", n)
	}
	if s, w := summary(strip(listed)), summary(want[:len(want)-1]); s != w {
		t.Errorf("ListVolumes: %s\nwant %s", s, w)
	}
	for name, got := range map[string][]*backend.Volume{"ListAllocations": all, "AllocationsOf": of} {
		if s, w := summary(got), summary(want); s != w {
			t.Errorf("%s: %s\nwant %s", name, s, w)
		}
	}
	if s, w := summary(recordless), summary(want[len(want)-1:]); s != w {
		t.Errorf("ListRecordless: %s, want %s", s, w)
	}
	if n := f.maxReading.Load(); n < 4 {
		t.Errorf("at most %d headers were read at once, want several", n)
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
