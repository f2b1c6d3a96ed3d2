package isilon

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

func (f *fakeArray) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

// tenantMade is a controller whose tenant "shop" is made (a first volume), with the
// fake's calls so far dropped, and the directory volume "pvc-1" will have.
func tenantMade(t *testing.T) (*Controller, *fakeArray, string) {
	t.Helper()
	c, f, _ := testController(t)
	if _, err := c.CreateVolume(context.Background(), req("pvc-0", 100)); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	return c, f, "/ifs/data/sh/shop/csi-vol-" + volid.Hash("pvc-1")
}

// volumeMade is tenantMade with volume "pvc-1" made, and the fake's calls dropped.
func volumeMade(t *testing.T) (*Controller, *fakeArray, *backend.Volume, string) {
	t.Helper()
	c, f, dir := tenantMade(t)
	v, err := c.CreateVolume(context.Background(), req("pvc-1", 100))
	if err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	return c, f, v, dir
}

// A new volume costs three Platform API requests once its tenant is known (issue 15): the
// directory with its record, its quota, its export. A retry finds and checks all three
// and changes nothing; a plain volume's delete skips the clone leftovers' lookups and
// removes the quota by its path (five requests).
func TestCreateVolumeRequests(t *testing.T) {
	ctx := context.Background()
	c, f, dir := tenantMade(t)
	v, err := c.CreateVolume(ctx, req("pvc-1", 100))
	if err != nil {
		t.Fatal(err)
	}
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
	if got, want := inOrder(f.takeCalls(), 0, 2, 2, 4), []string{"Attrs " + dir, "ExportOf " + dir + " in System",
		"DeleteDirQuota " + dir, "DeleteExport in System", "RemoveAll " + dir}; !slices.Equal(got, want) {
		t.Fatalf("delete of a plain volume made requests %q, want %q", got, want)
	}
	if _, ok := f.dirs[dir]; ok || f.quotas[dir] != nil || len(f.exports) != 1 {
		t.Fatalf("delete left the directory, quota or export")
	}
}

// inOrder sorts calls[from:to] for each pair (from, to) of bounds: requests sent at once
// are made in any order. Bounds past the calls leave the rest as it is.
func inOrder(calls []string, bounds ...int) []string {
	out := slices.Clone(calls)
	for i := 0; i+1 < len(bounds); i += 2 {
		if bounds[i+1] <= len(out) {
			slices.Sort(out[bounds[i]:bounds[i+1]])
		}
	}
	return out
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

// inFlightTogether makes each group's calls wait, as they start, until every call of their
// group has started, and reports the groups whose calls were not all in flight at once
// (one waited for another's answer). Calls outside the groups run as they come.
func inFlightTogether(f *fakeArray, groups ...[]string) (apart func() []string) {
	var mu sync.Mutex
	arrived := map[string]chan struct{}{}
	var missed []string
	for _, g := range groups {
		for _, call := range g {
			arrived[call] = make(chan struct{})
		}
	}
	f.before = func(call string) {
		for _, g := range groups {
			if !slices.Contains(g, call) {
				continue
			}
			close(arrived[call])
			timeout := time.After(5 * time.Second)
			for _, other := range g {
				select {
				case <-arrived[other]:
				case <-timeout:
					mu.Lock()
					missed = append(missed, call+" was answered before "+other+" was asked")
					mu.Unlock()
					return
				}
			}
		}
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return missed
	}
}

// A delete reads the volume's record and looks its export up at once, then removes the
// export and the quota at once, and the directory only once both are gone: three round
// trips instead of five.
func TestDeleteAsksTogetherWhatDoesNotDependOnEachOther(t *testing.T) {
	ctx := context.Background()
	c, f, v, dir := volumeMade(t)
	apart := inFlightTogether(f, []string{"Attrs " + dir, "ExportOf " + dir + " in System"},
		[]string{"DeleteExport in System", "DeleteDirQuota " + dir})
	if err := c.DeleteVolume(ctx, v.ID, goodSecrets); err != nil {
		t.Fatal(err)
	}
	if m := apart(); len(m) > 0 {
		t.Fatalf("delete: %q", m)
	}
	if calls := f.takeCalls(); len(calls) != 5 || calls[4] != "RemoveAll "+dir {
		t.Fatalf("delete made requests %q, want the directory removed last, after its export and quota", calls)
	}
	if _, ok := f.dirs[dir]; ok || f.quotas[dir] != nil || len(f.exports) != 1 {
		t.Fatalf("delete left the directory, quota or export")
	}
}

// A publish and an unpublish read the volume's grant records and look its export up at
// once: the export's update needs both, neither needs the other.
func TestPublishLooksUpRecordAndExportAtOnce(t *testing.T) {
	ctx := context.Background()
	c, f, v, dir := volumeMade(t)
	var err error
	node := backend.Node{Name: "n1", Address: "192.0.2.10"}
	for _, op := range []string{"publish", "unpublish"} {
		apart := inFlightTogether(f, []string{"Attrs " + dir, "ExportOf " + dir + " in System"})
		if op == "publish" {
			_, err = c.PublishVolume(ctx, v.ID, node, backend.PublishAccess{}, v.Context, goodSecrets)
		} else {
			err = c.UnpublishVolume(ctx, v.ID, node, goodSecrets)
		}
		if err != nil {
			t.Fatal(err)
		}
		if m := apart(); len(m) > 0 {
			t.Fatalf("%s: %q", op, m)
		}
		f.before = nil
		e, _ := f.ExportOf(ctx, "System", dir)
		if e == nil || slices.Contains(e.Clients, node.Address) != (op == "publish") {
			t.Fatalf("after %s the volume's export is %+v", op, e)
		}
	}
}
