package cephfs

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

func adoptDirReq(object string, size int64) *backend.AdoptRequest {
	return &backend.AdoptRequest{Object: object, Tenant: "team-a", Name: "site1", SizeBytes: size}
}

func listedIDs(t *testing.T, vols []*backend.Volume, err error) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vols {
		out = append(out, v.ID.String())
	}
	sort.Strings(out)
	return out
}

// A plain directory (a legacy site's data, not a subvolume) is adopted where it is: its ID
// names its path, its quota is the size asked, it is listed and counted, expanded,
// published, and its delete gives it back as it was with every byte still there (issue 12).
func TestAdoptPlainDirectoryInPlace(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.plantDir("/legacy/site1", 1000)
	f.plantDir("/legacy/site1/sub", 24)

	v, err := c.Adopt(ctx, adoptDirReq("cephfs:/legacy/site1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := volid.Adopted("fs1", "team-a", "1", "/legacy/site1")
	if v.ID != want || v.CapacityBytes != 1<<20 || v.Context[CtxRootPath] != "/legacy/site1" || v.Context[CtxFSName] != "cephfs" {
		t.Fatalf("adopted %+v, want %s of 1 MiB at rootPath /legacy/site1", v, want)
	}
	if parsed, err := volid.ParseVolume(v.ID.String()); err != nil || parsed != v.ID {
		t.Fatalf("ID %s does not round-trip: %+v %v", v.ID, parsed, err)
	}
	dir := f.tree["/legacy/site1"]
	if dir.xattrs[quotaXattr] != "1048576" || dir.xattrs[recordXattr] == "" || dir.bytes != 1000 || f.tree["/legacy/site1/sub"] == nil {
		t.Fatalf("directory after adoption: %+v (want quota 1 MiB, a record, its data)", dir)
	}
	got, err := c.GetVolume(ctx, v.ID, nil)
	if err != nil || got.RequestName != "site1" || got.CapacityBytes != 1<<20 || got.Context[CtxRootPath] != "/legacy/site1" {
		t.Fatalf("GetVolume: %+v %v", got, err)
	}
	if again, err := c.Adopt(ctx, adoptDirReq("cephfs:/legacy/site1", 1<<20)); err != nil || again.ID != v.ID || again.CapacityBytes != 1<<20 {
		t.Fatalf("second adoption: %+v %v", again, err)
	}

	ids := func(vols []*backend.Volume, err error) []string { t.Helper(); return listedIDs(t, vols, err) }
	own, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	all := []string{v.ID.String(), own.ID.String()}
	for _, tenant := range []string{"", "team-a"} {
		if got := ids(c.ListVolumes(ctx, tenant)); !slices.Equal(got, all) {
			t.Errorf("ListVolumes(%q) = %v, want %v", tenant, got, all)
		}
	}
	if got := ids(c.ListVolumes(ctx, "team-b")); len(got) != 0 {
		t.Errorf("ListVolumes(team-b) = %v, want none", got)
	}
	if got := ids(c.ListAllocations(ctx)); !slices.Equal(got, all) {
		t.Errorf("ListAllocations = %v, want %v", got, all)
	}
	if got := ids(c.ListVolumesAfter(ctx, "", 1)); !slices.Equal(got, all[:1]) {
		t.Errorf("first page of one = %v, want %v", got, all[:1])
	}
	adopted, err := c.AdoptedAllocations(ctx)
	if err != nil || len(adopted) != 1 || adopted[0].ID != v.ID || adopted[0].CapacityBytes != 1<<20 {
		t.Fatalf("AdoptedAllocations (the tenant quota index) = %+v %v, want %s of 1 MiB", adopted, err, v.ID)
	}

	if size, node, err := c.ExpandVolume(ctx, v.ID, 2<<20, 0, nil); err != nil || size != 2<<20 || node || dir.xattrs[quotaXattr] != "2097152" {
		t.Fatalf("ExpandVolume: %d %v %v, quota %q", size, node, err, dir.xattrs[quotaXattr])
	}

	n1, n2 := backend.Node{Name: "n1"}, backend.Node{Name: "n2"}
	single := backend.PublishAccess{SingleNode: true}
	if pc, err := c.PublishVolume(ctx, v.ID, n1, single, nil, nil); err != nil || pc != nil {
		t.Fatalf("publish on n1: %v %v (an adopted directory gets no tenant identity)", pc, err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n1, single, nil, nil); err != nil {
		t.Fatalf("republish on n1: %v", err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n1, backend.PublishAccess{SingleNode: true, ReadOnly: true}, nil, nil); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("republish read-only on n1: %v, want AlreadyExists", err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n2, single, nil, nil); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("single-node publish on n2 while on n1: %v, want FailedPrecondition", err)
	}
	if err := c.UnpublishVolume(ctx, v.ID, n1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n2, single, nil, nil); err != nil {
		t.Fatalf("publish on n2 after n1's unpublish: %v", err)
	}

	if _, err := c.CreateSnapshot(ctx, v.ID, "snap-1", nil, nil); backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), ".snap") {
		t.Fatalf("CreateSnapshot: %v, want FailedPrecondition saying how to snapshot it", err)
	}
	clone := volReq("pvc-clone", 1<<20)
	clone.SourceVolume = &v.ID
	if _, err := c.CreateVolume(ctx, clone); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("clone of the adopted directory: %v, want FailedPrecondition", err)
	}
	if snaps, err := c.ListSnapshots(ctx, &v.ID); err != nil || len(snaps) != 0 {
		t.Fatalf("ListSnapshots: %v %v", snaps, err)
	}

	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	dir = f.tree["/legacy/site1"]
	if dir == nil || dir.bytes != 1000 || f.tree["/legacy/site1/sub"] == nil || f.tree["/legacy/site1/sub"].bytes != 24 {
		t.Fatalf("DeleteVolume touched the data: %+v", dir)
	}
	if len(dir.xattrs) != 0 {
		t.Fatalf("released directory keeps attributes %v; want it as before its adoption (no quota, no record)", dir.xattrs)
	}
	if got := ids(c.ListVolumes(ctx, "")); !slices.Equal(got, all[1:]) {
		t.Errorf("after the release ListVolumes = %v, want %v", got, all[1:])
	}
	if entries, _ := f.Subdirs("cephfs", c.adoptedIndex()); len(entries) != 0 {
		t.Errorf("index entries left: %v", entries)
	}
	if _, err := c.GetVolume(ctx, v.ID, nil); !backend.IsNotFound(err) {
		t.Errorf("GetVolume after release: %v, want NotFound", err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatalf("second DeleteVolume: %v", err)
	}
	// Released, it can be adopted again, by another tenant too.
	other := adoptDirReq("cephfs:/legacy/site1", 1<<20)
	other.Tenant = "team-b"
	if _, err := c.Adopt(ctx, other); err != nil {
		t.Fatalf("adoption after release: %v", err)
	}
}

// A directory that had a quota keeps it when no larger size is asked, and gets it back on
// release.
func TestAdoptPlainDirectoryKeepsItsQuota(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.plantDir("/sites/b", 10)
	f.tree["/sites/b"].xattrs[quotaXattr] = "5000"
	v, err := c.Adopt(ctx, adoptDirReq("cephfs:/sites/b", 0))
	if err != nil || v.CapacityBytes != 5000 {
		t.Fatalf("Adopt: %+v %v, want its quota of 5000 bytes", v, err)
	}
	if _, _, err := c.ExpandVolume(ctx, v.ID, 8000, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	if q := f.tree["/sites/b"].xattrs[quotaXattr]; q != "5000" {
		t.Fatalf("quota after release %q, want the 5000 it had", q)
	}
}

// An adoption that died after setting the quota, before recording, is finished by its
// retry; the release still gives back the quota the directory had (none).
func TestAdoptPlainDirectoryRetryKeepsTheQuotaBefore(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.plantDir("/legacy/site1", 10)
	v, err := c.Adopt(ctx, adoptDirReq("cephfs:/legacy/site1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	delete(f.tree["/legacy/site1"].xattrs, recordXattr) // the first attempt died here
	if vols, err := c.ListVolumes(ctx, ""); err != nil || len(vols) != 0 {
		t.Fatalf("an unrecorded adoption is listed: %v %v", vols, err)
	}
	if again, err := c.Adopt(ctx, adoptDirReq("cephfs:/legacy/site1", 1<<20)); err != nil || again.ID != v.ID {
		t.Fatalf("retry: %+v %v", again, err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	if x := f.tree["/legacy/site1"].xattrs; len(x) != 0 {
		t.Fatalf("after release the directory has %v, want no quota (it had none) and no attribute of shiphold's", x)
	}
}

func TestAdoptPlainDirectoryRefuses(t *testing.T) {
	testCases := []struct {
		name  string
		setup func(*Controller, *fakeMgr)
		req   *backend.AdoptRequest
		want  backend.Code
		says  string
	}{
		{name: "absent", req: adoptDirReq("cephfs:/legacy/none", 1), want: backend.NotFound, says: "no directory"},
		{name: "a file", setup: func(_ *Controller, f *fakeMgr) { f.plantFile("/legacy/f") }, req: adoptDirReq("cephfs:/legacy/f", 1), want: backend.InvalidArgument, says: "not a directory"},
		{name: "root", req: adoptDirReq("cephfs:/", 1), want: backend.InvalidArgument, says: "root"},
		{name: "volumes", req: adoptDirReq("cephfs:/volumes", 1), want: backend.InvalidArgument, says: "subvolume"},
		{name: "inside a subvolume", req: adoptDirReq("cephfs:/volumes/csi/sub/uuid/data", 1), want: backend.InvalidArgument, says: "subvolume"},
		{name: "shiphold's index", req: adoptDirReq("cephfs:/.shiphold/fs1", 1), want: backend.InvalidArgument, says: "index"},
		{name: "unclean", req: adoptDirReq("cephfs:/legacy/../etc", 1), want: backend.InvalidArgument, says: "clean absolute"},
		{name: "relative", req: adoptDirReq("cephfs:legacy", 1), want: backend.InvalidArgument, says: "clean absolute"},
		{name: "unknown filesystem", setup: func(_ *Controller, f *fakeMgr) { f.plantDir("/legacy/site1", 0) }, req: adoptDirReq("nofs:/legacy/site1", 1), want: backend.InvalidArgument},
		{name: "too long for an ID", setup: func(_ *Controller, f *fakeMgr) { f.plantDir("/"+strings.Repeat("d", 110), 0) }, req: adoptDirReq("cephfs:/"+strings.Repeat("d", 110), 1), want: backend.InvalidArgument, says: "too long"},
		{name: "no quota, no size", setup: func(_ *Controller, f *fakeMgr) { f.plantDir("/legacy/site1", 10) }, req: adoptDirReq("cephfs:/legacy/site1", 0), want: backend.InvalidArgument, says: "--size"},
		{name: "more data than the size", setup: func(_ *Controller, f *fakeMgr) { f.plantDir("/legacy/site1", 3000) }, req: adoptDirReq("cephfs:/legacy/site1", 2000), want: backend.FailedPrecondition, says: "holds 3000 bytes"},
		{name: "another tenant's", setup: adoptFor("cephfs:/legacy/site1", "team-b"), req: adoptDirReq("cephfs:/legacy/site1", 1<<20), want: backend.AlreadyExists, says: "team-b"},
		{name: "inside an adopted one", setup: adoptFor("cephfs:/legacy", "team-a"), req: adoptDirReq("cephfs:/legacy/site1", 1<<20), want: backend.AlreadyExists, says: "inside"},
		{name: "around an adopted one", setup: adoptFor("cephfs:/legacy/site1", "team-a"), req: &backend.AdoptRequest{Object: "cephfs:/legacy", Tenant: "team-a", Name: "all", SizeBytes: 1 << 20}, want: backend.AlreadyExists, says: "holds"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFakeController(t)
			if tc.setup != nil {
				tc.setup(c, f)
			}
			_, err := c.Adopt(context.Background(), tc.req)
			if backend.CodeOf(err) != tc.want || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Adopt(%s): %v, want %v saying %q", tc.req.Object, err, tc.want, tc.says)
			}
		})
	}
}

func adoptFor(object, tenant string) func(*Controller, *fakeMgr) {
	return func(c *Controller, f *fakeMgr) {
		f.plantDir("/legacy/site1", 10)
		req := adoptDirReq(object, 1<<20)
		req.Tenant, req.Name = tenant, "first"
		if _, err := c.Adopt(context.Background(), req); err != nil {
			panic(err)
		}
	}
}

// Another backend on the same filesystem neither lists nor adopts a directory this one
// adopted.
func TestAdoptedDirectoryIsOneBackends(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.plantDir("/legacy/site1", 10)
	if _, err := c.Adopt(ctx, adoptDirReq("cephfs:/legacy/site1", 1<<20)); err != nil {
		t.Fatal(err)
	}
	other := newController("fs2", c.cfg, func(context.Context, map[string]string) (commander, error) { return f, nil })
	if vols, err := other.ListVolumes(ctx, ""); err != nil || len(vols) != 0 {
		t.Fatalf("backend fs2 lists %v (%v), want none of fs1's adoptions", vols, err)
	}
	if _, err := other.Adopt(ctx, adoptDirReq("cephfs:/legacy/site1", 1<<20)); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("adoption by fs2: %v, want AlreadyExists", err)
	}
}
