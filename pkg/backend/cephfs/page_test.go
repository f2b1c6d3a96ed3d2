package cephfs

import (
	"context"
	"fmt"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListVolumesAfter pages the volumes in ID order across tenants and asks the mgr for the
// details of a page's subvolumes only (ListVolumes asks for every subvolume's).
func TestListVolumesAfterPages(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		r := volReq(fmt.Sprintf("v%d", i), 1)
		r.Tenant = []string{"team-a", "team-b"}[i%2]
		if _, err := c.CreateVolume(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	f.mgrCommands()
	var got []string
	after := ""
	for pages := 0; pages < 10; pages++ {
		vols, err := c.ListVolumesAfter(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		infos := 0
		for _, cmd := range f.mgrCommands() {
			if cmd == "fs subvolume info" {
				infos++
			}
		}
		if infos > len(vols) {
			t.Errorf("a page of %d volumes asked for %d subvolume infos", len(vols), infos)
		}
		if len(vols) == 0 {
			break
		}
		for _, v := range vols {
			got = append(got, v.ID.String())
		}
		after = got[len(got)-1]
	}
	all, err := c.ListVolumes(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) || len(got) != 10 {
		t.Fatalf("pages listed %d volumes, ListVolumes %d, want 10", len(got), len(all))
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("pages not in ID order or repeated: %v", got)
		}
	}
}

// A page reads its subvolumes through the MDS (the group directory, each subvolume's record,
// snapshot count, data directory and quota), not through the mgr, whose single-threaded
// volumes module took 2.1 s for a page of 100 at 2,000 volumes (a `subvolume ls` of the
// whole group and a `subvolume info` per volume). What the MDS cannot vouch for is still
// asked of the mgr: a subvolume with snapshots (deleted with them retained, or made anew
// over such a one), one without a record (a clone still copying, a create that died).
func TestListVolumesAfterReadsThroughTheMDS(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	var made []string
	for i := 0; i < 6; i++ {
		v, err := c.CreateVolume(ctx, volReq(fmt.Sprintf("v%d", i), int64(i+1)<<20))
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, v.ID.String())
	}
	f.mgrCommands()
	want := map[string]*backend.Volume{}
	for _, v := range mustList(t, c, ctx) {
		want[v.ID.String()] = v
	}
	if cmds := f.mgrCommands(); len(cmds) != 0 {
		t.Errorf("pages of plain recorded subvolumes asked the mgr %q", cmds)
	}
	if len(want) != len(made) {
		t.Fatalf("listed %d volumes, made %d", len(want), len(made))
	}
	for i, id := range made {
		v := want[id]
		sub := v.Context[CtxSubvolumeName]
		if v.CapacityBytes != int64(i+1)<<20 || v.Context[CtxRootPath] != "/volumes/shiphold-team-a/"+sub+"/uuid" {
			t.Errorf("volume %s listed as %d bytes at %q, want %d bytes at its data directory", id, v.CapacityBytes, v.Context[CtxRootPath], int64(i+1)<<20)
		}
	}

	// With a snapshot, then deleted with it retained: asked of the mgr, which leaves it out.
	snapped, err := volid.ParseVolume(made[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, snapped, "s1", nil, nil); err != nil {
		t.Fatal(err)
	}
	// Unrecorded: a create that died before it recorded the request.
	f.mu.Lock()
	delete(f.subs["shiphold-team-a/csi-vol-"+volid.Hash("v1")].xattrs, recordXattr)
	f.mu.Unlock()
	f.mgrCommands()
	listed := mustList(t, c, ctx)
	if infos := countOf(f.mgrCommands(), "fs subvolume info"); infos != 2 || len(listed) != len(made) {
		t.Errorf("with a snapshotted and an unrecorded subvolume: %d volumes listed, %d infos asked; want %d and 2", len(listed), infos, len(made))
	}
	if err := c.DeleteVolume(ctx, snapped, nil); err != nil {
		t.Fatal(err)
	}
	if listed := mustList(t, c, ctx); len(listed) != len(made)-1 {
		t.Errorf("a subvolume deleted with its snapshot retained is listed: %d volumes, want %d", len(listed), len(made)-1)
	}
}

// mustList reads every page of two volumes.
func mustList(t *testing.T, c *Controller, ctx context.Context) []*backend.Volume {
	t.Helper()
	var out []*backend.Volume
	after := ""
	for {
		vols, err := c.ListVolumesAfter(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(vols) == 0 {
			return out
		}
		out = append(out, vols...)
		after = vols[len(vols)-1].ID.String()
	}
}

func countOf(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if c == prefix {
			n++
		}
	}
	return n
}

// Pages read a group's directory once while it is unchanged: a readdir of 2,000
// subvolumes took 0.43-0.51 s, about all of a page's 0.5 s, and every page (the first one
// twice) read the whole group again. A change to the group, a create or a delete by this
// controller or any other client, is seen by the next page.
func TestPagesReadAnUnchangedGroupOnce(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := c.CreateVolume(ctx, volReq(fmt.Sprintf("v%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	f.entriesRead = 0
	if got := len(mustList(t, c, ctx)); got != 10 {
		t.Fatalf("listed %d volumes, want 10", got)
	}
	if f.entriesRead != 10 {
		t.Errorf("6 pages of a group of 10 unchanged subvolumes read %d directory entries, want 10 (the group once)", f.entriesRead)
	}

	// Another client makes a subvolume in the group, and removes one: the next pages see both.
	gone := volid.Volume{Backend: c.name, Tenant: "team-a", Hash: volid.Hash("v3")}
	f.mu.Lock()
	f.subs["shiphold-team-a/csi-vol-"+volid.Hash("other")] = &fakeSub{quota: 1, meta: map[string]string{}, xattrs: map[string]string{}, snaps: map[string]bool{}}
	delete(f.subs, "shiphold-team-a/csi-vol-"+gone.Hash)
	f.mu.Unlock()
	f.entriesRead = 0
	listed := map[string]bool{}
	for _, v := range mustList(t, c, ctx) {
		listed[v.ID.Hash] = true
	}
	if len(listed) != 10 || !listed[volid.Hash("other")] || listed[gone.Hash] {
		t.Errorf("after another client made one subvolume and removed another, pages listed %d volumes (the new one: %v, the removed one: %v); want 10, with the new one and without the removed one",
			len(listed), listed[volid.Hash("other")], listed[gone.Hash])
	}
	if f.entriesRead != 10 {
		t.Errorf("pages after the change read %d directory entries, want 10 (the changed group once)", f.entriesRead)
	}
}
