package cephfstest

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListVolumesAfter reads plain subvolumes through the MDS and asks the mgr only about the
// others (page.go). What it reports must be what the mgr's `subvolume info` says, for a
// plain volume, one with a snapshot, and one without a quota; one deleted with its
// snapshot retained is not listed. ListVolumes and the readings of tenant usage
// (ListAllocations, AllocationIDs) read the groups and volumes the same way, and find
// the same.
func TestCephFSRealPagesReadAsTheMgrDoes(t *testing.T) {
	e := needCeph(t)
	ctx := ctxT(t)
	sec := e.cfg.Section.(*cephfs.Config)
	cred, err := ceph.CredentialsFor(sec.Credentials, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := e.conns.Conn(ctx, e.cfg.Name, sec.Cluster, cred)
	if err != nil {
		t.Fatal(err)
	}
	fsa := admin.NewFromConn(conn)
	made := map[string]*backend.Volume{}
	var snapped, retained *backend.Volume
	for i, tenant := range []string{"team-a", "team-b", "team-a", "team-b", "team-a"} {
		v, err := e.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-list-" + string(rune('a'+i)), Tenant: tenant,
			RequiredBytes: int64(i+1) << 20})
		if err != nil {
			t.Fatal(err)
		}
		made[v.ID.String()] = v
		t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), v.ID, nil) })
	}
	for _, g := range []string{sec.SubvolumeGroupPrefix + "team-a", sec.SubvolumeGroupPrefix + "team-b"} {
		t.Cleanup(func() { fsa.RemoveSubVolumeGroup(fsName, g) })
	}
	for _, v := range made {
		switch {
		case snapped == nil:
			snapped = v
		case retained == nil:
			retained = v
		}
	}
	for _, v := range []*backend.Volume{snapped, retained} {
		snap, err := e.ctrl.CreateSnapshot(ctx, v.ID, "snap-"+v.Context[cephfs.CtxSubvolumeName], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.ctrl.DeleteSnapshot(ctxT(t), snap.ID, nil) })
	}
	if err := e.ctrl.DeleteVolume(ctx, retained.ID, nil); err != nil {
		t.Fatal(err)
	}
	delete(made, retained.ID.String())
	// No quota: as an admin's `subvolume resize --no_shrink inf` leaves it.
	var unlimited *backend.Volume
	for _, v := range made {
		if v != snapped {
			unlimited = v
			break
		}
	}
	if _, err := fsa.ResizeSubVolume(fsName, unlimited.Context[cephfs.CtxSubvolumeGroup], unlimited.Context[cephfs.CtxSubvolumeName], admin.Infinite, false); err != nil {
		t.Fatal(err)
	}

	logAt, _ := mgrCommandsSince(t, 0, "group_name:"+sec.SubvolumeGroupPrefix)
	listed := pagesOf(t, e.ctrl)
	// The mgr was asked about the two with snapshots only.
	if _, n := mgrCommandsSince(t, logAt, "group_name:"+sec.SubvolumeGroupPrefix); n != 2 {
		t.Errorf("the pages sent the mgr %d volumes-module commands about the test's groups, want 2 (a subvolume info for each of the two with a snapshot)", n)
	}
	var ids []string
	for _, v := range listed {
		ids = append(ids, v.ID.String())
		if made[v.ID.String()] == nil {
			t.Errorf("listed %s, which is not a volume (deleted with its snapshot retained?)", v.ID)
			continue
		}
		group, sub := v.Context[cephfs.CtxSubvolumeGroup], v.Context[cephfs.CtxSubvolumeName]
		info, err := fsa.SubVolumeInfo(fsName, group, sub)
		if err != nil {
			t.Fatal(err)
		}
		var quota int64
		if bc, ok := info.BytesQuota.(admin.ByteCount); ok {
			quota = int64(bc)
		}
		if v.Context[cephfs.CtxRootPath] != info.Path || v.CapacityBytes != quota {
			t.Errorf("%s/%s listed at %q with %d bytes; the mgr says %q, %d bytes", group, sub, v.Context[cephfs.CtxRootPath], v.CapacityBytes, info.Path, quota)
		}
	}
	if !sort.StringsAreSorted(ids) || len(ids) != len(made) {
		t.Errorf("pages listed %v; want the %d volumes in ID order", ids, len(made))
	}

	// The readings of tenant usage and a full listing read the same way: every
	// volumes-module command counts here, a subvolumegroup ls or subvolume ls too.
	readings := []struct {
		name string
		read func() ([]*backend.Volume, error)
		mgr  int
	}{
		{"ListVolumes", func() ([]*backend.Volume, error) { return e.ctrl.ListVolumes(ctx, "") }, 2},
		{"ListAllocations", func() ([]*backend.Volume, error) { return e.ctrl.ListAllocations(ctx) }, 2},
		{"AllocationIDs", func() ([]*backend.Volume, error) {
			ids, err := e.ctrl.AllocationIDs(ctx)
			var out []*backend.Volume
			for _, id := range ids {
				out = append(out, &backend.Volume{ID: id})
			}
			return out, err
		}, 0},
	}
	for _, r := range readings {
		logAt, _ := mgrCommandsSince(t, 0, "")
		vols, err := r.read()
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if _, n := mgrCommandsSince(t, logAt, ""); n != r.mgr {
			t.Errorf("%s sent the mgr %d volumes-module commands, want %d", r.name, n, r.mgr)
		}
		got := map[string]int64{}
		for _, v := range vols {
			if v.ID.Tenant == "team-a" || v.ID.Tenant == "team-b" {
				got[v.ID.String()] = v.CapacityBytes
			}
		}
		if r.name == "AllocationIDs" { // every subvolume directory, the retained one too
			if len(got) != len(made)+1 {
				t.Errorf("AllocationIDs: %d of the test's subvolumes, want %d", len(got), len(made)+1)
			}
			continue
		}
		if len(got) != len(made) {
			t.Errorf("%s: %d of the test's volumes, want %d", r.name, len(got), len(made))
		}
		for _, v := range listed {
			if b, ok := got[v.ID.String()]; !ok || b != v.CapacityBytes {
				t.Errorf("%s: %s at %d bytes (listed: %v), the pages and the mgr say %d", r.name, v.ID, b, ok, v.CapacityBytes)
			}
		}
	}
}

// The controller keeps a group's listing while the group's directory is unchanged
// (dirlisting.go), so a change made by any other client must reach its next page: another
// controller (its own connection, its own libcephfs client) makes a volume in the group
// and deletes another, and the mgr itself removes a third; the first controller's next
// listing sees each, and reads each volume as before.
func TestCephFSRealPagesSeeChangesByOtherClients(t *testing.T) {
	e := needCeph(t)
	ctx := ctxT(t)
	conns := ceph.NewConnections()
	t.Cleanup(conns.Close)
	other, err := cephfs.NewController(e.cfg, conns)
	if err != nil {
		t.Fatal(err)
	}
	fsa := admin.NewFromConn(rawConn(t))
	group := e.cfg.Section.(*cephfs.Config).SubvolumeGroupPrefix + "team-a"
	t.Cleanup(func() { fsa.RemoveSubVolumeGroup(fsName, group) })
	create := func(c *cephfs.Controller, name string) *backend.Volume {
		t.Helper()
		v, err := c.CreateVolume(ctx, &backend.VolumeRequest{Name: name, Tenant: "team-a", RequiredBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), v.ID, nil) })
		return v
	}
	want := map[string]bool{}
	for i := 0; i < 4; i++ {
		want[create(e.ctrl, fmt.Sprintf("pvc-seen-%d", i)).ID.String()] = true
	}
	listed := func(step string) {
		t.Helper()
		got := map[string]bool{}
		for _, v := range pagesOf(t, e.ctrl, "team-a") {
			got[v.ID.String()] = true
			if v.CapacityBytes != 1<<20 {
				t.Errorf("%s: %s listed with %d bytes, want %d", step, v.ID, v.CapacityBytes, 1<<20)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: pages list %v, want %v", step, keysOf(got), keysOf(want))
		}
	}
	listed("made by the controller")
	listed("read again, unchanged")

	made := create(other, "pvc-seen-other")
	want[made.ID.String()] = true
	listed("another controller made a volume")

	var gone string
	for id := range want {
		if id != made.ID.String() {
			gone = id
			break
		}
	}
	goneID, _ := volid.ParseVolume(gone)
	if err := other.DeleteVolume(ctx, goneID, nil); err != nil {
		t.Fatal(err)
	}
	delete(want, gone)
	listed("another controller deleted a volume")

	if err := fsa.RemoveSubVolume(fsName, group, made.Context[cephfs.CtxSubvolumeName]); err != nil {
		t.Fatal(err)
	}
	delete(want, made.ID.String())
	listed("the mgr removed a subvolume")
}

// pagesOf reads every page of c, two volumes a page, and returns the volumes of tenants
// (all of them when none is named), in the order the pages list them.
func pagesOf(t *testing.T, c *cephfs.Controller, tenants ...string) []*backend.Volume {
	t.Helper()
	var out []*backend.Volume
	for after := ""; ; {
		page, err := c.ListVolumesAfter(ctxT(t), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		for _, v := range page {
			if len(tenants) == 0 || slices.Contains(tenants, v.ID.Tenant) {
				out = append(out, v)
			}
		}
		after = page[len(page)-1].ID.String()
	}
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
