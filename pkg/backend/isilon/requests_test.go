package isilon

import (
	"context"
	"slices"
	"testing"

	"github.com/shiphold/shiphold/pkg/volid"
)

func (f *fakeArray) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

// A new volume costs three Platform API requests once its tenant is known (issue 15): the
// directory with its record, its quota, its export. A retry finds and checks all three
// and changes nothing; a plain volume's delete skips the clone leftovers' lookups and
// removes the quota by its path (five requests).
func TestCreateVolumeRequests(t *testing.T) {
	ctx := context.Background()
	c, f, _ := testController(t)
	if _, err := c.CreateVolume(ctx, req("pvc-0", 100)); err != nil { // makes the tenant
		t.Fatal(err)
	}
	f.takeCalls()
	v, err := c.CreateVolume(ctx, req("pvc-1", 100))
	if err != nil {
		t.Fatal(err)
	}
	dir := "/ifs/data/sh/shop/csi-vol-" + volid.Hash("pvc-1")
	if got, want := f.takeCalls(), []string{"CreateDir " + dir, "CreateDirQuota " + dir, "CreateExport " + dir + " in System"}; !slices.Equal(got, want) {
		t.Fatalf("create made requests %q, want %q", got, want)
	}
	if f.dirs[dir][attrRecord] == "" || f.quotas[dir] == nil || f.quotas[dir].Hard != 100 {
		t.Fatalf("new volume lacks its record or quota: attrs %v quota %+v", f.dirs[dir], f.quotas[dir])
	}
	again, err := c.CreateVolume(ctx, req("pvc-1", 100))
	if err != nil {
		t.Fatal(err)
	}
	if again.Context[CtxExportID] != v.Context[CtxExportID] || len(f.exports) != 2 {
		t.Fatalf("retry: export %s (first %s), %d exports for 2 volumes", again.Context[CtxExportID], v.Context[CtxExportID], len(f.exports))
	}
	if calls := f.takeCalls(); slices.ContainsFunc(calls, func(s string) bool { return s == "CreateDirQuota "+dir || s == "CreateExport "+dir+" in System" }) {
		t.Fatalf("retry created again: %q", calls)
	}
	if err := c.DeleteVolume(ctx, v.ID, goodSecrets); err != nil {
		t.Fatal(err)
	}
	// The quota goes by its path, without a lookup of its ID.
	if got, want := f.takeCalls(), []string{"Attrs " + dir, "ExportOf " + dir + " in System", "DeleteExport in System",
		"DeleteDirQuota " + dir, "RemoveAll " + dir}; !slices.Equal(got, want) {
		t.Fatalf("delete of a plain volume made requests %q, want %q", got, want)
	}
	if _, ok := f.dirs[dir]; ok || f.quotas[dir] != nil || len(f.exports) != 1 {
		t.Fatalf("delete left the directory, quota or export")
	}
}

// A clone cut short in an earlier process leaves only its temporary directory: the delete,
// finding no volume directory, still removes it.
func TestDeleteVolumeRemovesAnAbandonedCloneCopy(t *testing.T) {
	c, f, _ := testController(t)
	r := req("clone", 100)
	id := r.ID("isi", "")
	f.mkdirLocked(cloneDir(defaultZone(c.cfg), id), volumeMode, record(r, 100, "v1:isi:shop:x"))
	if err := c.DeleteVolume(context.Background(), id, goodSecrets); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.dirs[cloneDir(defaultZone(c.cfg), id)]; ok {
		t.Fatalf("the abandoned copy %s is left", cloneDir(defaultZone(c.cfg), id))
	}
}
