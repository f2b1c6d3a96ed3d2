package cephfs

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// The mgr volumes module serves one command at a time, so every command a create sends is
// paid by every other create of a burst: a create sends the subvolume create and nothing
// else the MDS or the monitors can answer. The tenant's group is made once; the tenant's
// last delete removes its identity but not its group, so its next first volume makes the
// identity again (monitors) without asking the mgr for the group (the bench's extra 0.2
// commands per create: its warm-up volume was the tenant's last).
func TestCreateVolumeMgrCommands(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	step := func(what string, call func() error, want ...string) {
		t.Helper()
		f.mgrCommands()
		if err := call(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := f.mgrCommands(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s sent the mgr %q, want %q", what, got, want)
		}
	}
	var v1, v2 *backend.Volume
	create := func(name string, v **backend.Volume) func() error {
		return func() (err error) {
			*v, err = c.CreateVolume(ctx, volReq(name, 1<<20))
			return err
		}
	}
	step("a tenant's first create", create("pvc-1", &v1), "fs subvolumegroup create", "fs subvolume create")
	step("its second create", create("pvc-2", &v2), "fs subvolume create")
	var again *backend.Volume
	step("a retried create", create("pvc-2", &again), "fs subvolume info")
	if again.ID != v2.ID || again.CapacityBytes != v2.CapacityBytes || !reflect.DeepEqual(again.Context, v2.Context) {
		t.Errorf("retry answered %+v, first %+v", again, v2)
	}
	step("delete", func() error { return c.DeleteVolume(ctx, v1.ID, nil) }, "fs subvolume rm")
	step("the tenant's last delete", func() error { return c.DeleteVolume(ctx, v2.ID, nil) }, "fs subvolume rm")
	if _, ok := f.auth[teamAUser]; ok {
		t.Fatal("identity kept after the tenant's last volume")
	}
	var v3 *backend.Volume
	step("the next first volume of the tenant", create("pvc-3", &v3), "fs subvolume create")
	if u, ok := f.auth[teamAUser]; !ok || u.caps["mds"] != "allow rw path=/volumes/shiphold-team-a" {
		t.Errorf("identity after the tenant's next first volume: %+v (exists %v)", u, ok)
	}
	if v3.Context[CtxSubvolumeName] != "csi-vol-"+volid.Hash("pvc-3") {
		t.Errorf("volume context %v", v3.Context)
	}
}

// A create asks the MDS for the subvolume's record (absent) and writes it, and nothing
// more: no readdir of the new subvolume to find its data directory, which made the MDS
// take the directory's caps back from the mgr's client while the mgr made the next
// subvolumes of a burst (issue 15: 5.7 ms of a create, and the burst's rate). The node gets
// the data directory in the publish context instead, found once per attachment.
func TestCreateVolumeListsNoDirectory(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, volReq("pvc-0", 1<<20)); err != nil { // makes the group
		t.Fatal(err)
	}
	base := "/volumes/shiphold-team-a/csi-vol-" + volid.Hash("pvc-1")
	f.mu.Lock()
	f.fsOps = nil
	f.mu.Unlock()
	v, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ops := append([]string(nil), f.fsOps...)
	f.mu.Unlock()
	if want := []string{"getxattr " + base, "setxattr " + base}; !reflect.DeepEqual(ops, want) {
		t.Errorf("a create asked the MDS %q, want %q", ops, want)
	}
	if p, ok := v.Context[CtxRootPath]; ok {
		t.Errorf("the volume context names the data directory %q: only a readdir or the mgr knows it at create", p)
	}
	pc, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{SingleNode: true}, v.Context, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pc[PublishContextRootPath]; got != base+"/uuid" {
		t.Errorf("publish context %s = %q, want the data directory %s/uuid", PublishContextRootPath, got, base)
	}
}

// A burst of a tenant's first creates makes its group, sets its namespace and makes its
// identity once, not once per create.
func TestConcurrentFirstCreatesShareTheGroup(t *testing.T) {
	c, f := newFakeController(t)
	f.slow = map[string]time.Duration{"fs subvolumegroup create": 50 * time.Millisecond}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CreateVolume(context.Background(), volReq(fmt.Sprintf("pvc-%d", i), 1<<20))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(f.commands("fs subvolumegroup create")); got != 1 {
		t.Errorf("%d concurrent first creates sent %d group creates, want 1", n, got)
	}
	if got, made := f.monCount("auth get"), f.monCount("auth get-or-create"); got != 1 || made != 1 {
		t.Errorf("%d concurrent first creates asked for the identity %d times and made it %d times, want 1 and 1", n, got, made)
	}
	if got := len(f.commands("fs subvolume create")); got != n {
		t.Errorf("%d subvolume creates, want %d", got, n)
	}
}

// A create that dies after any of its steps (the step done, its answer lost) is finished
// by the retry, on the same controller or on a restarted one: one subvolume, recorded,
// sized, in the tenant's namespace, with the tenant's identity, and no step done twice
// that Ceph would not take twice.
func TestCreateVolumeRetriedAfterEachStep(t *testing.T) {
	sub := "csi-vol-" + volid.Hash("pvc-1")
	steps := []string{
		"fs subvolumegroup create",
		"setxattr " + layoutNamespace,
		"getxattr " + layoutPool,
		"auth get-or-create",
		"fs subvolume create",
		"setxattr " + recordXattr,
	}
	for _, restart := range []bool{false, true} {
		for _, step := range steps {
			t.Run(fmt.Sprintf("%s/restart=%v", step, restart), func(t *testing.T) {
				c, f := newFakeController(t)
				ctx := context.Background()
				f.crashAfter = step
				if _, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20)); err == nil {
					t.Fatalf("the create whose %q answer was lost succeeded", step)
				}
				if f.crashAfter != "" {
					t.Fatalf("the create never reached %q", step)
				}
				if restart {
					c, _ = newFakeController(t)
					c.storage.Connect = func(context.Context, map[string]string) (commander, error) { return f, nil }
				}
				f.mgrCommands()
				v, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
				if err != nil {
					t.Fatalf("retry: %v", err)
				}
				if cmds := f.mgrCommands(); len(cmds) > 2 {
					t.Errorf("the retry sent the mgr %q", cmds)
				}
				if n := len(f.commands("fs subvolume create")); n > 2 {
					t.Errorf("%d subvolume creates", n)
				}
				if rec := recordIn(t, f, "shiphold-team-a/"+sub); rec.Name != "pvc-1" || rec.Bytes != 1<<20 {
					t.Errorf("record %+v", rec)
				}
				if s := f.subs["shiphold-team-a/"+sub]; s.quota != 1<<20 || s.poolNS != "shiphold-team-a" {
					t.Errorf("subvolume quota %d, namespace %q", s.quota, s.poolNS)
				}
				if u, ok := f.auth[teamAUser]; !ok || u.caps["osd"] != "allow rw pool=cephfs.data namespace=shiphold-team-a" {
					t.Errorf("identity %+v (exists %v)", u, ok)
				}
				if v.CapacityBytes != 1<<20 || v.Context[CtxSubvolumeName] != sub {
					t.Errorf("volume %+v", v)
				}
				// And once more: an ordinary retry of a finished create.
				if again, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20)); err != nil || again.ID != v.ID {
					t.Errorf("second retry: %+v %v", again, err)
				}
			})
		}
	}
}
