package cephfs

import (
	"context"
	"slices"
	"sort"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

func adoptSub(size int64) *backend.AdoptRequest {
	return &backend.AdoptRequest{Object: "cephfs/csi/csi-vol-legacy", Tenant: "team-a", Name: "legacy-1", SizeBytes: size}
}

func TestAdoptSubvolumeInPlace(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.groups["csi"] = true
	f.subs["csi/csi-vol-legacy"] = &fakeSub{quota: 1 << 20, meta: map[string]string{}, xattrs: map[string]string{}, snaps: map[string]bool{}}

	v, err := c.Adopt(ctx, adoptSub(0))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := volid.Adopted("fs1", "team-a", "1", "csi/csi-vol-legacy")
	if v.ID != want || v.CapacityBytes != 1<<20 || v.Context[CtxSubvolumeGroup] != "csi" || v.Context[CtxSubvolumeName] != "csi-vol-legacy" {
		t.Fatalf("adopted %+v, want %s of 1 MiB in csi/csi-vol-legacy", v, want)
	}
	got, err := c.GetVolume(ctx, v.ID, nil)
	if err != nil || got.RequestName != "legacy-1" {
		t.Fatalf("GetVolume: %+v %v", got, err)
	}
	if size, _, err := c.ExpandVolume(ctx, v.ID, 2<<20, 0, nil); err != nil || size != 2<<20 || f.subs["csi/csi-vol-legacy"].quota != 2<<20 {
		t.Fatalf("ExpandVolume: %d %v", size, err)
	}
	if again, err := c.Adopt(ctx, adoptSub(0)); err != nil || again.ID != v.ID {
		t.Fatalf("second adoption: %+v %v", again, err)
	}
	other := adoptSub(0)
	other.Tenant = "team-b"
	if _, err := c.Adopt(ctx, other); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("adoption by another tenant: %v, want AlreadyExists", err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	if s := f.subs["csi/csi-vol-legacy"]; s != nil && !s.retained {
		t.Fatalf("DeleteVolume left the adopted subvolume: %+v", s)
	}
}

func TestAdoptSubvolumeRefuses(t *testing.T) {
	testCases := []struct {
		name string
		req  *backend.AdoptRequest
		want backend.Code
	}{
		{name: "absent", req: adoptSub(1 << 20), want: backend.NotFound},
		{name: "plain directory path", req: &backend.AdoptRequest{Object: "/volumes/x", Tenant: "team-a", Name: "x"}, want: backend.InvalidArgument},
		{name: "shiphold's own", req: &backend.AdoptRequest{Object: "cephfs/shiphold-team-a/csi-vol-0123456789abcdef", Tenant: "team-a", Name: "x", SizeBytes: 1}, want: backend.AlreadyExists},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newFakeController(t)
			if _, err := c.Adopt(context.Background(), tc.req); backend.CodeOf(err) != tc.want {
				t.Fatalf("Adopt: %v, want %v", err, tc.want)
			}
		})
	}
}

// An adopted subvolume is listed with its tenant's volumes, under its adopted ID and quota,
// by ListVolumes and by the paged listing; a foreign subvolume no one adopted is not
// (issue 12).
func TestListVolumesListsAdoptedSubvolumes(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.groups["csi"] = true
	for _, name := range []string{"csi-vol-legacy", "csi-vol-never-adopted"} {
		f.subs["csi/"+name] = &fakeSub{quota: 1 << 20, meta: map[string]string{}, xattrs: map[string]string{}, snaps: map[string]bool{}}
	}
	adopted, err := c.Adopt(ctx, adoptSub(3<<20))
	if err != nil {
		t.Fatal(err)
	}
	own, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{adopted.ID.String(), own.ID.String()}
	ids := func(vols []*backend.Volume, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range vols {
			if v.ID == adopted.ID && v.CapacityBytes != 3<<20 {
				t.Errorf("%s listed with %d bytes, want %d", v.ID, v.CapacityBytes, 3<<20)
			}
			out = append(out, v.ID.String())
		}
		sort.Strings(out)
		return out
	}
	for _, tenant := range []string{"", "team-a"} {
		if got := ids(c.ListVolumes(ctx, tenant)); !slices.Equal(got, want) {
			t.Errorf("ListVolumes(%q) = %v, want %v", tenant, got, want)
		}
	}
	if got := ids(c.ListVolumes(ctx, "team-b")); len(got) != 0 {
		t.Errorf("ListVolumes(team-b) = %v, want none", got)
	}
	if got := ids(c.ListAllocations(ctx)); !slices.Equal(got, want) {
		t.Errorf("ListAllocations (the tenant quotas' reading) = %v, want %v", got, want)
	}
	if got := ids(c.ListVolumesAfter(ctx, "", 0)); !slices.Equal(got, want) {
		t.Errorf("ListVolumesAfter(all) = %v, want %v", got, want)
	}
	var paged []string
	for after := ""; len(paged) <= 4; {
		page := ids(c.ListVolumesAfter(ctx, after, 1))
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[0]
	}
	if !slices.Equal(paged, want) {
		t.Errorf("pages of one: %v, want %v", paged, want)
	}
	if err := c.DeleteVolume(ctx, adopted.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := ids(c.ListVolumes(ctx, "")); !slices.Equal(got, want[1:]) {
		t.Errorf("after the adopted subvolume's delete ListVolumes = %v, want %v", got, want[1:])
	}
}

// Another backend on the same cluster does not list a subvolume this one adopted: it would
// take it for a volume of its own that no PV references, and gc would offer to delete it.
func TestListVolumesLeavesAnotherBackendsAdoptions(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.groups["csi"] = true
	f.subs["csi/csi-vol-legacy"] = &fakeSub{quota: 1 << 20, meta: map[string]string{}, xattrs: map[string]string{}, snaps: map[string]bool{}}
	if _, err := c.Adopt(ctx, adoptSub(0)); err != nil {
		t.Fatal(err)
	}
	other := newController("fs2", c.cfg, func(context.Context, map[string]string) (commander, error) { return f, nil })
	if vols, err := other.ListVolumes(ctx, ""); err != nil || len(vols) != 0 {
		t.Fatalf("backend fs2 lists %v (%v), want none of fs1's adoptions", vols, err)
	}
}
