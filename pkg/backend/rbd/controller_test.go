package rbd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

const gib = 1 << 30

// librbdParent is a parent a clone points at.
var librbdParent = librbd.ParentInfo{Image: librbd.ImageSpec{ImageName: "csi-vol-parent", PoolName: "rbd", PoolNamespace: "t1"}, Snap: librbd.SnapSpec{SnapName: "csi-snap-x"}}

func newFakeController(t *testing.T) (*Controller, *fakeCluster) {
	t.Helper()
	f := newFakeCluster()
	return fakeControllerOn(f), f
}

// fakeControllerOn is a controller of backend rbd1 on fake cluster f.
func fakeControllerOn(f *fakeCluster) *Controller {
	cfg := Config{Pool: "rbd", Cluster: ceph.Cluster{ClusterID: "c1", Monitors: []string{"10.0.0.5:6789"}}}
	c := newController("rbd1", cfg, func(context.Context, map[string]string) (connection, error) { return f, nil })
	c.SetTaskWait(0)
	return c
}

func volReq(name string, bytes int64) *backend.VolumeRequest {
	return &backend.VolumeRequest{Name: name, Tenant: "t1", RequiredBytes: bytes}
}

func mustCreate(t *testing.T, c *Controller, req *backend.VolumeRequest) *backend.Volume {
	t.Helper()
	v, err := c.CreateVolume(context.Background(), req)
	if err != nil {
		t.Fatalf("create %s: %v", req.Name, err)
	}
	return v
}

func TestCreateVolumeRecordsTheRequestOnTheImage(t *testing.T) {
	c, f := newFakeController(t)
	v := mustCreate(t, c, volReq("pvc-1", gib+1))
	name := imageName(volid.Hash("pvc-1"))
	img := f.image("rbd", "t1", name)
	if img == nil {
		t.Fatalf("no image %s in rbd/t1", name)
	}
	if img.size != gib+sizeUnit || v.CapacityBytes != gib+sizeUnit {
		t.Errorf("size %d, capacity %d: want whole MiB %d", img.size, v.CapacityBytes, gib+sizeUnit)
	}
	rec, err := decodeRecord(img.meta[recordKey])
	if err != nil || rec.Name != "pvc-1" || rec.Backend != "rbd1" || rec.Tenant != "t1" {
		t.Errorf("record %+v, %v", rec, err)
	}
	if v.ID.Location != "1" || v.ID.Tenant != "t1" || v.Context[CtxImage] != name || v.Context[CtxPool] != "rbd" || v.Context[CtxClusterID] != "c1" {
		t.Errorf("volume %+v", v)
	}
	if len(img.watchers) != 0 {
		t.Errorf("create left watchers on the image: %+v", img.watchers)
	}
	if n := f.count("OpenImage"); n != 0 {
		t.Errorf("a plain create opened the image for writing %d times (a watch each)", n)
	}
}

func TestCreateVolumeIdempotencyAndConflicts(t *testing.T) {
	cases := []struct {
		name   string
		second func(*backend.VolumeRequest)
		want   backend.Code
	}{
		{"same request", func(*backend.VolumeRequest) {}, codeOK},
		{"larger size", func(r *backend.VolumeRequest) { r.RequiredBytes = 2 * gib }, backend.AlreadyExists},
		{"block instead of mount", func(r *backend.VolumeRequest) { r.Block = true }, backend.AlreadyExists},
		{"other image features", func(r *backend.VolumeRequest) {
			r.Parameters = map[string]string{ParamImageFeatures: "layering,exclusive-lock"}
		}, backend.AlreadyExists},
		{"limit below the size", func(r *backend.VolumeRequest) { r.LimitBytes = gib / 2; r.RequiredBytes = gib / 2 }, backend.AlreadyExists},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFakeController(t)
			first := mustCreate(t, c, volReq("pvc-1", gib))
			req := volReq("pvc-1", gib)
			tc.second(req)
			f.resetCalls()
			v, err := c.CreateVolume(context.Background(), req)
			if got := codeOf(err); got != tc.want {
				t.Fatalf("second create: %v (code %v), want %v", err, got, tc.want)
			}
			if err == nil && (v.ID != first.ID || v.CapacityBytes != first.CapacityBytes) {
				t.Errorf("retry answered %+v, first %+v", v, first)
			}
			if n := f.count("TrashImage"); n != 0 {
				t.Errorf("a retry or a conflict discarded the recorded image (%d trash moves)", n)
			}
			if f.image("rbd", "t1", imageName(volid.Hash("pvc-1"))) == nil {
				t.Error("the first volume's image is gone")
			}
		})
	}
}

func TestCreateVolumeFindsImagesItDoesNotOwn(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(f *fakeCluster, img *fakeImage)
		want    backend.Code
		remade  bool // the leftover image was discarded and the volume made anew
	}{
		{"another backend's record", func(f *fakeCluster, img *fakeImage) {
			img.meta[recordKey] = volumeRecord{RequestRecord: backend.RequestRecord{Name: "pvc-1"}, Backend: "other"}.encode()
		}, backend.AlreadyExists, false},
		{"no record (an attempt cut short)", func(*fakeCluster, *fakeImage) {}, codeOK, true},
		{"corrupt record", func(f *fakeCluster, img *fakeImage) { img.meta[recordKey] = "{" }, backend.Internal, false},
		{"a clone still carrying its parent's record", func(f *fakeCluster, img *fakeImage) {
			img.meta[recordKey] = volumeRecord{RequestRecord: backend.RequestRecord{Name: "the-parent"}, Backend: "rbd1"}.encode()
			img.parent = &librbdParent
		}, codeOK, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFakeController(t)
			io, _ := f.OpenPool("rbd")
			f.pools["rbd"].spaces["t1"] = true
			io.SetNamespace("t1")
			name := imageName(volid.Hash("pvc-1"))
			if err := io.CreateImage(name, gib, 1); err != nil {
				t.Fatal(err)
			}
			old := f.image("rbd", "t1", name)
			tc.prepare(f, old)
			_, err := c.CreateVolume(context.Background(), volReq("pvc-1", gib))
			if got := codeOf(err); got != tc.want {
				t.Fatalf("create over the leftover: %v (code %v), want %v", err, got, tc.want)
			}
			now := f.image("rbd", "t1", name)
			if remade := now != old; remade != tc.remade {
				t.Errorf("image remade %t, want %t", remade, tc.remade)
			}
			if tc.remade {
				if rec, _ := decodeRecord(now.meta[recordKey]); rec.Name != "pvc-1" || rec.Backend != "rbd1" {
					t.Errorf("new image's record %+v", rec)
				}
				if left := f.trashed("rbd", "t1"); len(left) != 0 {
					t.Errorf("the leftover's purge was not queued: trash holds %d entries", len(left))
				}
			}
		})
	}
}

func TestCreateVolumeErrors(t *testing.T) {
	cases := []struct {
		name    string
		req     func(*backend.VolumeRequest)
		fail    string
		err     error
		want    backend.Code
		message string
	}{
		{"missing pool", func(r *backend.VolumeRequest) { r.Parameters = map[string]string{ParamPool: "nopool"} }, "", nil, backend.InvalidArgument, "rbd pool init nopool"},
		{"not a pool", func(r *backend.VolumeRequest) { r.Parameters = map[string]string{ParamPool: "cephfs.data"} }, "CreateNamespace", fakeErrno(syscall.EOPNOTSUPP), backend.Unimplemented, "rbd pool init"},
		{"pool full", nil, "CreateImage", fakeErrno(syscall.ENOSPC), backend.ResourceExhausted, "create image"},
		{"quota", nil, "CreateImage", fakeErrno(syscall.EDQUOT), backend.ResourceExhausted, "create image"},
		{"caps", nil, "CreateImage", fakeErrno(syscall.EPERM), backend.FailedPrecondition, "profile rbd"},
		{"monitors gone", nil, "OpenPool", fakeErrno(syscall.ETIMEDOUT), backend.Unavailable, "10.0.0.5:6789"},
		{"limit below required", func(r *backend.VolumeRequest) { r.LimitBytes = gib / 2 }, "", nil, backend.OutOfRange, "limit_bytes"},
		{"namespace vanished", nil, "CreateImage", errNoEnt, backend.NotFound, "vanished; retry"},
		{"record write fails", nil, "Exec", fakeErrno(syscall.EIO), backend.Internal, "set metadata shiphold.volume"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFakeController(t)
			req := volReq("pvc-1", gib)
			if tc.req != nil {
				tc.req(req)
			}
			if tc.fail != "" {
				f.failNext(tc.fail, tc.err)
			}
			_, err := c.CreateVolume(context.Background(), req)
			if codeOf(err) != tc.want || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("got %v (code %v), want %v with %q", err, codeOf(err), tc.want, tc.message)
			}
			// A retry once the fault is gone makes the volume (the failed call is counted).
			if tc.req == nil {
				mustCreate(t, c, req)
			}
		})
	}
}

// The tenant's namespace is checked once per controller, and made again when it vanished.
func TestCreateVolumeNamespaceCache(t *testing.T) {
	c, f := newFakeController(t)
	mustCreate(t, c, volReq("pvc-1", gib))
	mustCreate(t, c, volReq("pvc-2", gib))
	if n := f.count("NamespaceExists"); n != 1 {
		t.Errorf("namespace checked %d times for two creates, want 1", n)
	}
	f.mu.Lock()
	delete(f.pools["rbd"].spaces, "t1")
	f.mu.Unlock()
	if _, err := c.CreateVolume(context.Background(), volReq("pvc-3", gib)); codeOf(err) != backend.NotFound {
		t.Fatalf("create in a vanished namespace: %v", err)
	}
	mustCreate(t, c, volReq("pvc-3", gib))
	if n := f.count("CreateNamespace"); n != 2 {
		t.Errorf("namespace created %d times, want 2 (again after it vanished)", n)
	}
}

func TestGetListExpandVolume(t *testing.T) {
	c, f := newFakeController(t)
	v := mustCreate(t, c, volReq("pvc-1", gib))
	mustCreate(t, c, &backend.VolumeRequest{Name: "pvc-2", Tenant: "t2", RequiredBytes: gib})
	// An image of another backend and one without a record are not volumes.
	io, _ := f.OpenPool("rbd")
	io.SetNamespace("t1")
	io.CreateImage(imageName(volid.Hash("stray")), gib, 1)
	ctx := context.Background()

	got, err := c.GetVolume(ctx, v.ID, nil)
	if err != nil || got.ID != v.ID || got.CapacityBytes != gib || got.RequestName != "pvc-1" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	for _, tenant := range []string{"t1", ""} {
		list, err := c.ListVolumes(ctx, tenant)
		want := map[string]int{"t1": 1, "": 2}[tenant]
		if err != nil || len(list) != want {
			t.Errorf("list %q: %d volumes, %v; want %d", tenant, len(list), err, want)
		}
	}
	allocs, err := c.ListAllocations(ctx)
	if err != nil || len(allocs) != 3 {
		t.Errorf("allocations: %d, %v; want 3 (the recordless image holds space)", len(allocs), err)
	}
	size, node, err := c.ExpandVolume(ctx, v.ID, 2*gib, 0, nil)
	if err != nil || size != 2*gib || !node || f.image("rbd", "t1", imageName(v.ID.Hash)).size != 2*gib {
		t.Fatalf("expand: %d %t %v", size, node, err)
	}
	if size, _, err := c.ExpandVolume(ctx, v.ID, gib, 0, nil); err != nil || size != 2*gib {
		t.Errorf("a smaller expand: %d, %v; want the size kept", size, err)
	}
	missing := v.ID
	missing.Hash = volid.Hash("nothing")
	for name, err := range map[string]error{
		"get":    func() error { _, err := c.GetVolume(ctx, missing, nil); return err }(),
		"expand": func() error { _, _, err := c.ExpandVolume(ctx, missing, gib, 0, nil); return err }(),
		"get, pool ID gone": func() error {
			id := v.ID
			id.Location = "99"
			_, err := c.GetVolume(ctx, id, nil)
			return err
		}(),
		"get, other backend": func() error { id := v.ID; id.Backend = "x"; _, err := c.GetVolume(ctx, id, nil); return err }(),
	} {
		if codeOf(err) != backend.NotFound {
			t.Errorf("%s of a missing volume: %v", name, err)
		}
	}
}

func TestDeleteVolume(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume)
		want    backend.Code
		gone    bool
		// sweep: the image goes only once the controller's sweep has run. A delete reads no
		// watcher list (only who answers a notify), so it does not see a stale watch
		// record: the mgr's purge fails busy, and the sweep drops the record.
		sweep bool
	}{
		{"plain", nil, codeOK, true, false},
		{"twice", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			if err := c.DeleteVolume(context.Background(), v.ID, nil); err != nil {
				t.Fatal(err)
			}
		}, codeOK, true, false},
		{"with a CSI snapshot", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			if _, err := c.CreateSnapshot(context.Background(), v.ID, "snap-1", nil, nil); err != nil {
				t.Fatal(err)
			}
		}, backend.FailedPrecondition, false, false},
		{"open on a node", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			f.watch(f.image("rbd", "t1", imageName(v.ID.Hash)), 77, "10.0.0.7:0/1", true)
		}, backend.FailedPrecondition, false, false},
		{"a stale watch record", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			f.watch(f.image("rbd", "t1", imageName(v.ID.Hash)), 78, "10.0.0.8:0/1", false)
		}, codeOK, true, true},
		{"a stale watch record of the controller's own client", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			f.watch(f.image("rbd", "t1", imageName(v.ID.Hash)), int64(f.self), "10.0.0.1:0/self", false)
		}, codeOK, true, true},
		{"another backend's image", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			f.image("rbd", "t1", imageName(v.ID.Hash)).meta[recordKey] = volumeRecord{Backend: "other"}.encode()
		}, codeOK, false, false},
		{"image already in the trash, purge never queued", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			io, _ := f.OpenPool("rbd")
			io.SetNamespace("t1")
			io.TrashImage(imageName(v.ID.Hash))
		}, codeOK, true, false},
		{"trash move fails", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			f.failNext("TrashImage", fakeErrno(syscall.EACCES))
		}, backend.FailedPrecondition, false, false},
		{"no mgr caps (the image waits in the trash)", func(t *testing.T, c *Controller, f *fakeCluster, v *backend.Volume) {
			f.failNext("MgrCommand", fakeErrno(syscall.EACCES))
		}, backend.FailedPrecondition, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFakeController(t)
			v := mustCreate(t, c, volReq("pvc-1", gib))
			if tc.prepare != nil {
				tc.prepare(t, c, f, v)
			}
			err := c.DeleteVolume(context.Background(), v.ID, nil)
			if codeOf(err) != tc.want {
				t.Fatalf("delete: %v (code %v), want %v", err, codeOf(err), tc.want)
			}
			if tc.sweep {
				if _, err := c.Collect(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			img := f.image("rbd", "t1", imageName(v.ID.Hash))
			trash := f.trashed("rbd", "t1")
			if gone := img == nil && len(trash) == 0; gone != tc.gone {
				t.Errorf("image gone (and purged) %t, want %t; image %v, trash %d", gone, tc.gone, img != nil, len(trash))
			}
		})
	}
}

// A purge the mgr cannot do yet (a stale watch on the trashed image) is listed and, by
// Collect, unblocked; a trash entry whose purge was never queued is queued by Collect.
func TestLeftoversAndCollect(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	io, _ := f.OpenPool("rbd")
	io.SetNamespace("t1")
	io.TrashImage(imageName(v.ID.Hash)) // a controller died between the move and the queueing
	left, err := c.Leftovers(ctx)
	if err != nil || len(left) != 1 || left[0].State != "purge not queued" {
		t.Fatalf("leftovers: %+v, %v", left, err)
	}
	f.holdTasks = true
	if _, err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.tasks) != 1 || f.tasks[0].Refs.Action != taskTrashRemove {
		t.Fatalf("collect queued %+v", f.tasks)
	}
	// The purge fails on a stale watch record; the next Collect drops it and re-queues.
	f.watch(f.trashed("rbd", "t1")[0], 79, "10.0.0.9:0/1", false)
	purgeFailsBusy(t, f, "a stale watch")
	f.holdTasks = false
	if _, err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if left := f.trashed("rbd", "t1"); len(left) != 0 || len(f.tasks) != 0 {
		t.Errorf("after collect: %d trash entries, tasks %+v", len(left), f.tasks)
	}
}

// The mgr answers a task add with the same task among the last 50 it finished, and queues
// nothing. A trash entry that outlived its finished purge (the storm test: a killed
// controller's delete, retried, moved the image's name to the trash again as the purge
// ran) was queued by every sweep, answered "purge queued", and stayed for ever. The sweep
// removes such an entry itself.
func TestTheSweepRemovesAnEntryTheMgrWillNotPurgeAgain(t *testing.T) {
	c, f, ctx := deletedAwaitingPurge(t)
	f.mu.Lock()
	for _, img := range f.pools["rbd"].trash {
		img.outlivesPurge = true
	}
	f.mu.Unlock()
	f.runTasks()
	if left := f.trashed("rbd", "t1"); len(left) != 1 || f.queuedPurges() != 0 {
		t.Fatalf("after the purge: %d trash entries, %d purges queued; want the entry left, none queued", len(left), f.queuedPurges())
	}
	// The entry was put back by a move cut short: librbd refuses to remove it "moving".
	f.fail = map[string][]error{"RemoveTrashed": {fakeErrno(syscall.EUCLEAN)}}
	for sweep := 1; sweep <= 2; sweep++ {
		left, err := c.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.runTasks()
		if trashed := f.trashed("rbd", "t1"); len(trashed) != 0 {
			t.Fatalf("sweep %d: %d trash entries left (leftovers %+v)", sweep, len(trashed), left)
		}
		if sweep == 1 && (len(left) != 1 || !strings.Contains(left[0].State, "removed by the controller")) {
			t.Errorf("sweep 1 listed %+v, want the entry removed by the controller", left)
		}
	}
}

// purgeFailsBusy runs the mgr's queued purge, which a watch on the image must fail busy.
func purgeFailsBusy(t *testing.T, f *fakeCluster, watch string) {
	t.Helper()
	f.runTasks()
	if len(f.tasks) != 1 || !strings.Contains(f.tasks[0].RetryMessage, "busy") {
		t.Fatalf("purge with %s: %+v", watch, f.tasks)
	}
}

// deletedAwaitingPurge deletes a volume while the mgr holds its tasks: its image waits in
// the trash, its purge queued.
func deletedAwaitingPurge(t *testing.T) (*Controller, *fakeCluster, context.Context) {
	t.Helper()
	c, f := newFakeController(t)
	ctx := context.Background()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	f.holdTasks = true
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	return c, f, ctx
}

// A watch record left by the controller's own client (a trash move whose writable open
// timed out while the OSD was frozen: the OSD registered the watch after the client had
// given up on it) blocks the purge like any other stale record; the sweep drops it, and
// keeps the client: a record is the OSD's, and goes with the header rewrite.
func TestCollectDropsTheControllersOwnStaleWatchRecord(t *testing.T) {
	c, f, ctx := deletedAwaitingPurge(t)
	f.watch(f.trashed("rbd", "t1")[0], int64(f.self), "10.0.0.1:0/self", false)
	purgeFailsBusy(t, f, "a stale watch record")
	f.holdTasks = false
	if _, err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if left := f.trashed("rbd", "t1"); len(left) != 0 {
		t.Errorf("after the sweep %d trash entries still blocked by the controller's own stale watch record: tasks %+v", len(left), f.tasks)
	}
	if len(f.replaced) != 0 {
		t.Errorf("the sweep replaced the client for a watch record: %q", f.replaced)
	}
}

// librbd's trash move leaves the image it opened open when a read after the open fails:
// Ceph's Trash::move returns mirror_image_get's error without closing the image (an OSD
// frozen past the op timeout; a corrupt mirroring record). The open's watch lives as long
// as the client does, and the mgr's purge of the image, moved to the trash by a later
// attempt, fails busy for ever. Seen in the OSD freeze test as a trash entry watched by
// the plugin's own client. No call can close that image: the sweep has the client
// replaced, whose shutdown lets go of the watch, and never rewrites the header under a
// live watch.
func TestCollectReplacesTheClientLibrbdLeftATrashedImageOpenOn(t *testing.T) {
	c, f, ctx := deletedAwaitingPurge(t)
	trashed := f.trashed("rbd", "t1")[0]
	f.watch(trashed, int64(f.self), "10.0.0.1:0/self", true)
	purgeFailsBusy(t, f, "a live watch of the controller's own client")
	f.resetCalls()
	if _, err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.replaced) != 1 {
		t.Fatalf("the sweep did not replace the client holding the trashed image open: replaced %q", f.replaced)
	}
	if n := f.count("ReplaceObject"); n != 0 {
		t.Errorf("the sweep rewrote the header of an image with a live watch (%d times)", n)
	}
	f.runTasks() // the purge the sweep queued again: the old client's watch lingers
	if left := f.trashed("rbd", "t1"); len(left) != 1 {
		t.Fatalf("%d trash entries, want the one still watched", len(left))
	}
	f.dropRetiredWatches()
	if _, err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.replaced) != 1 {
		t.Errorf("the sweep replaced the new client for the old one's watch: %q", f.replaced)
	}
	f.runTasks()
	if left := f.trashed("rbd", "t1"); len(left) != 0 {
		t.Errorf("%d trash entries left after the client was replaced: tasks %+v", len(left), f.tasks)
	}
}

// A delete that finds the image open in its own client (librbd's trash move of an earlier
// attempt left it so, see above; or that attempt still runs) refuses with UNAVAILABLE
// rather than move it to the trash, where the purge would fail busy, and has the client
// replaced; the CO's retry, on the new client, deletes it.
func TestDeleteVolumeReplacesTheClientLibrbdLeftTheImageOpenOn(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	f.watch(f.image("rbd", "t1", imageName(v.ID.Hash)), int64(f.self), "10.0.0.1:0/self", true)
	err := c.DeleteVolume(ctx, v.ID, nil)
	if codeOf(err) != backend.Unavailable {
		t.Fatalf("delete of an image open in the controller's own client: %v (code %v), want UNAVAILABLE", err, codeOf(err))
	}
	if !strings.Contains(err.Error(), "retry") {
		t.Errorf("the error does not say to retry: %v", err)
	}
	if len(f.replaced) != 1 {
		t.Fatalf("the client was not replaced: %q", f.replaced)
	}
	if f.image("rbd", "t1", imageName(v.ID.Hash)) == nil || len(f.trashed("rbd", "t1")) != 0 {
		t.Fatal("the image went to the trash while open")
	}
	// Until Ceph drops the replaced client's watch, the retry is told to retry again: the
	// watch is the controller's own old client's, not a node's (FAILED_PRECONDITION, which
	// a CO does not retry; seen in the OSD freeze test as an image left after its deletes).
	err = c.DeleteVolume(ctx, v.ID, nil)
	if codeOf(err) != backend.Unavailable {
		t.Fatalf("delete while the replaced client's watch lingers: %v (code %v), want UNAVAILABLE", err, codeOf(err))
	}
	if len(f.replaced) != 1 {
		t.Errorf("the new client was replaced too: %q", f.replaced)
	}
	f.dropRetiredWatches()
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatalf("the retry on the new client: %v", err)
	}
	if f.image("rbd", "t1", imageName(v.ID.Hash)) != nil || len(f.trashed("rbd", "t1")) != 0 {
		t.Error("the image is not gone after the retry")
	}
}

// A purge that failed while the storage was out (an OSD frozen: its ops timed out) waits
// for the mgr's next retry, 30 s times its attempts and up to 5 minutes away, whatever the
// cause was: the controller's sweep starts it again at once. Seen in the OSD freeze test
// as a trash entry still there six minutes after every delete had succeeded.
func TestCollectRestartsAPurgeThatBacksOff(t *testing.T) {
	c, f, ctx := deletedAwaitingPurge(t)
	if len(f.tasks) != 1 {
		t.Fatalf("the delete queued %+v, want the purge", f.tasks)
	}
	// The mgr ran it while the OSD was frozen; it failed and backs off.
	f.tasks[0].RetryMessage = "[errno 110] error removing image from trash"
	f.tasks[0].backingOff = true
	f.holdTasks = false
	if _, err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if left := f.trashed("rbd", "t1"); len(left) != 0 {
		t.Errorf("after the sweep %d trash entries wait for the mgr's next retry: tasks %+v", len(left), f.tasks)
	}
	// A purge the mgr is running is left alone.
	w := mustCreate(t, c, volReq("pvc-2", gib))
	f.holdTasks = true
	if err := c.DeleteVolume(ctx, w.ID, nil); err != nil {
		t.Fatal(err)
	}
	f.tasks[0].InProgress = true
	f.tasks[0].RetryMessage = "[errno 110] error removing image from trash"
	id := f.tasks[0].ID
	if _, err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.tasks) != 1 || f.tasks[0].ID != id {
		t.Errorf("the sweep replaced a running purge: %+v", f.tasks)
	}
}

func TestSnapshots(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	other := mustCreate(t, c, volReq("pvc-2", gib))

	s, err := c.CreateSnapshot(ctx, v.ID, "snap-1", nil, nil)
	if err != nil || !s.Ready || s.SizeBytes != gib || s.CreatedAt.IsZero() || s.ID.Volume != v.ID {
		t.Fatalf("create snapshot: %+v, %v", s, err)
	}
	sn := f.image("rbd", "t1", imageName(v.ID.Hash)).snap(snapName(volid.Hash("snap-1")))
	if sn == nil || !sn.protected {
		t.Fatalf("snapshot on the image: %+v (protected for clone format 1)", sn)
	}
	f.resetCalls()
	again, err := c.CreateSnapshot(ctx, v.ID, "snap-1", nil, nil)
	if err != nil || again.ID != s.ID || !again.CreatedAt.Equal(s.CreatedAt) {
		t.Errorf("retry: %+v, %v", again, err)
	}
	if n := f.count("OpenImage") + f.count("CreateSnapshot"); n != 0 {
		t.Errorf("a retry opened the image for writing or snapshotted again (%d calls)", n)
	}
	if _, err := c.CreateSnapshot(ctx, other.ID, "snap-1", nil, nil); codeOf(err) != backend.AlreadyExists {
		t.Errorf("same name on another volume: %v", err)
	}
	missing := v.ID
	missing.Hash = volid.Hash("none")
	if _, err := c.CreateSnapshot(ctx, missing, "snap-2", nil, nil); codeOf(err) != backend.NotFound {
		t.Errorf("snapshot of a missing volume: %v", err)
	}
	if got, err := c.GetSnapshot(ctx, s.ID); err != nil || got.ID != s.ID {
		t.Errorf("get: %+v, %v", got, err)
	}
	for _, src := range []*volid.Volume{nil, &v.ID, &other.ID} {
		list, err := c.ListSnapshots(ctx, src)
		want := 1
		if src == &other.ID {
			want = 0
		}
		if err != nil || len(list) != want {
			t.Errorf("list %v: %d, %v; want %d", src, len(list), err, want)
		}
	}
	if err := c.DeleteSnapshot(ctx, s.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSnapshot(ctx, s.ID, nil); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := c.GetSnapshot(ctx, s.ID); codeOf(err) != backend.NotFound {
		t.Errorf("get after delete: %v", err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Errorf("delete of the volume once its snapshot is gone: %v", err)
	}
}

func TestCloneFromSnapshot(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	if _, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	s, err := c.CreateSnapshot(ctx, v.ID, "snap-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := volReq("pvc-restore", 2*gib)
	req.SourceSnapshot = &s.ID
	clone := mustCreate(t, c, req)
	img := f.image("rbd", "t1", imageName(clone.ID.Hash))
	if img.parent == nil || img.size != 2*gib || clone.CapacityBytes != 2*gib {
		t.Fatalf("clone: parent %v, size %d, capacity %d", img.parent, img.size, clone.CapacityBytes)
	}
	if rec, _ := decodeRecord(img.meta[recordKey]); rec.Name != "pvc-restore" || rec.Source != s.ID.String() {
		t.Errorf("clone's record %+v", rec)
	}
	if _, ok := img.meta[backend.PublishRecordKey(backend.Node{Name: "n1"})]; ok {
		t.Error("the clone kept its parent's publish record")
	}
	if clone.SourceSnapshot == nil || *clone.SourceSnapshot != s.ID {
		t.Errorf("clone's source %+v", clone.SourceSnapshot)
	}
	if again := mustCreate(t, c, req); again.ID != clone.ID {
		t.Errorf("retry of the clone: %+v", again)
	}
	small := volReq("pvc-small", gib)
	small.SourceSnapshot, small.LimitBytes = &s.ID, gib/2
	if _, err := c.CreateVolume(ctx, small); codeOf(err) != backend.OutOfRange {
		t.Errorf("clone over its limit: %v", err)
	}
	gone := s.ID
	gone.SnapHash = volid.Hash("nope")
	lost := volReq("pvc-lost", gib)
	lost.SourceSnapshot = &gone
	if _, err := c.CreateVolume(ctx, lost); codeOf(err) != backend.NotFound {
		t.Errorf("clone of a missing snapshot: %v", err)
	}

	// The snapshot's clone is flattened by the mgr before the snapshot goes; Pending while
	// the mgr works.
	f.holdTasks = true
	if err := c.DeleteSnapshot(ctx, s.ID, nil); codeOf(err) != backend.Pending {
		t.Fatalf("delete of a snapshot with a clone, mgr busy: %v", err)
	}
	f.runTasks()
	f.holdTasks = false
	if err := c.DeleteSnapshot(ctx, s.ID, nil); err != nil {
		t.Fatalf("delete after the flatten: %v", err)
	}
	if f.image("rbd", "t1", imageName(clone.ID.Hash)).parent != nil {
		t.Error("the clone still depends on the removed snapshot")
	}
}

// A CSI cleanup deletes a restored volume and at once the snapshot it came from: the mgr
// purges the clone while DeleteSnapshot lists the snapshot's clones, and librbd, which reads
// the attached clones and then looks up their names, answers ENOENT for the clone purged in
// between. That ENOENT read as NotFound, which the driver takes for "already deleted": the
// snapshot stayed, and the volume's delete failed with "still has 1 snapshot" (csi-sanity
// rbd/mount, once). The same ENOENT in a volume's delete (its temporary clone snapshots)
// answered OK and left the image.
func TestSnapshotDeleteWhileTheMgrPurgesItsClone(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	s, err := c.CreateSnapshot(ctx, v.ID, "snap-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := volReq("pvc-restore", gib)
	req.SourceSnapshot = &s.ID
	clone := mustCreate(t, c, req)
	f.holdTasks = true
	if err := c.DeleteVolume(ctx, clone.ID, nil); err != nil {
		t.Fatalf("delete of the clone: %v", err)
	}
	purgeOnce := func() {
		f.midChildren = nil
		f.runTasksLocked()
	}
	f.midChildren = purgeOnce

	err = c.DeleteSnapshot(ctx, s.ID, nil)
	snap := f.image("rbd", "t1", imageName(v.ID.Hash)).snap(snapName(s.ID.SnapHash))
	if (err == nil || backend.IsNotFound(err)) && snap != nil {
		t.Fatalf("DeleteSnapshot answered %v (done, for the CO) while the snapshot is still on the image", err)
	}
	if err != nil {
		t.Fatalf("DeleteSnapshot once the clone is purged: %v", err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatalf("delete of the volume after its snapshot's delete: %v", err)
	}
}

// The same race in a volume's delete, which removes the temporary snapshots its copies were
// made from: ENOENT answered OK and left the image.
func TestVolumeDeleteWhileTheMgrPurgesACopy(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	src := mustCreate(t, c, volReq("pvc-src", gib))
	copyReq := volReq("pvc-copy", gib)
	copyReq.SourceVolume = &src.ID
	f.holdTasks = true
	if _, err := c.CreateVolume(ctx, copyReq); codeOf(err) != backend.Pending {
		t.Fatalf("copy while the mgr is busy: %v", err)
	}
	if err := c.DeleteVolume(ctx, copyReq.ID(c.name, src.ID.Location), nil); err != nil {
		t.Fatalf("delete of the copy: %v", err)
	}
	f.midChildren = func() {
		f.midChildren = nil
		f.runTasksLocked()
	}
	err := c.DeleteVolume(ctx, src.ID, nil)
	if (err == nil || backend.IsNotFound(err)) && f.image("rbd", "t1", imageName(src.ID.Hash)) != nil {
		t.Fatalf("DeleteVolume answered %v (done, for the CO) while the image is still there", err)
	}
	if err != nil {
		t.Fatalf("DeleteVolume once the copy is purged: %v", err)
	}
}

func TestCloneFromVolume(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	src := mustCreate(t, c, volReq("pvc-1", gib))
	req := volReq("pvc-copy", gib)
	req.SourceVolume = &src.ID

	f.holdTasks = true
	_, err := c.CreateVolume(ctx, req)
	if codeOf(err) != backend.Pending || !strings.Contains(err.Error(), "flatten") {
		t.Fatalf("copy while the mgr flattens: %v", err)
	}
	parent := f.image("rbd", "t1", imageName(src.ID.Hash))
	tmp := tmpSnapName(imageName(volid.Hash("pvc-copy")))
	if parent.snap(tmp) == nil {
		t.Fatalf("no temporary snapshot %s on the source", tmp)
	}
	left, err := c.CollectSnapshots(ctx, "t1")
	if err != nil || len(left) != 1 || !strings.Contains(left[0].State, "in progress") {
		t.Errorf("temporary snapshots while the copy runs: %+v, %v", left, err)
	}
	f.runTasks()
	f.holdTasks = false
	v := mustCreate(t, c, req)
	if f.image("rbd", "t1", imageName(v.ID.Hash)).parent != nil || parent.snap(tmp) != nil {
		t.Errorf("after the copy: the clone has a parent or the temporary snapshot stayed")
	}
	if v.SourceVolume == nil || *v.SourceVolume != src.ID {
		t.Errorf("copy's source %+v", v.SourceVolume)
	}
	if err := c.DeleteVolume(ctx, src.ID, nil); err != nil {
		t.Errorf("delete of the source after the copy: %v", err)
	}
}

// TestCloneFromVolumeAfterAnUnprotectWasCut: a process killed while it unprotected the
// temporary snapshot (a delete of the half-made copy, cut by SIGKILL) leaves it
// "unprotecting". librbd's API still calls it protected, answers a protect busy and a
// clone (format 1) invalid argument: every retry of the copy failed INVALID_ARGUMENT for as
// long as the storm test ran (5 minutes). The create finishes the cut unprotect and
// protects the snapshot again.
func TestCloneFromVolumeAfterAnUnprotectWasCut(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	src := mustCreate(t, c, volReq("pvc-1", gib))
	req := volReq("pvc-copy", gib)
	req.SourceVolume = &src.ID
	parent := f.image("rbd", "t1", imageName(src.ID.Hash))
	tmp := tmpSnapName(imageName(volid.Hash("pvc-copy")))
	if err := (&fakeHandle{f: f, img: parent}).CreateSnapshot(tmp); err != nil {
		t.Fatal(err)
	}
	parent.snap(tmp).unprotecting = true

	v, err := c.CreateVolume(ctx, req)
	if err != nil {
		t.Fatalf("copy from a source whose temporary snapshot was left unprotecting: %v", err)
	}
	if v.SourceVolume == nil || *v.SourceVolume != src.ID || parent.snap(tmp) != nil {
		t.Errorf("the copy: source %+v, temporary snapshot left: %v", v.SourceVolume, parent.snap(tmp) != nil)
	}
}

func TestPublishRecords(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	n1, n2 := backend.Node{Name: "n1"}, backend.Node{Name: "n2"}
	single := backend.PublishAccess{SingleNode: true}
	if _, err := c.PublishVolume(ctx, v.ID, n1, single, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n1, single, nil, nil); err != nil {
		t.Errorf("republish: %v", err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n1, backend.PublishAccess{ReadOnly: true, SingleNode: true}, nil, nil); codeOf(err) != backend.AlreadyExists {
		t.Errorf("republish read-only: %v", err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n2, single, nil, nil); codeOf(err) != backend.FailedPrecondition {
		t.Errorf("second node on a single-node volume: %v", err)
	}
	// A node still holding the image after its record goes is fenced.
	f.watch(f.image("rbd", "t1", imageName(v.ID.Hash)), 90, "10.0.0.90:0/5", true)
	if err := c.UnpublishVolume(ctx, v.ID, n1, nil); err != nil {
		t.Fatal(err)
	}
	if len(f.blocklisted) != 1 || f.blocklisted[0] != "10.0.0.90:0/5" {
		t.Errorf("fenced %v", f.blocklisted)
	}
	if _, err := c.PublishVolume(ctx, v.ID, n2, single, nil, nil); err != nil {
		t.Errorf("publish after the unpublish: %v", err)
	}
	missing := v.ID
	missing.Hash = volid.Hash("none")
	if _, err := c.PublishVolume(ctx, missing, n1, single, nil, nil); codeOf(err) != backend.NotFound {
		t.Errorf("publish of a missing volume: %v", err)
	}
}

func TestCapacityAndProbe(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	if a, err := c.Capacity(ctx, nil); err != nil || a != 1<<40 {
		t.Errorf("capacity: %d, %v", a, err)
	}
	if _, err := c.Capacity(ctx, map[string]string{ParamPool: "nopool"}); codeOf(err) != backend.InvalidArgument {
		t.Errorf("capacity of a missing pool: %v", err)
	}
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("AQBsecret==\n"), 0o600)
	c.cfg.Credentials = ceph.DefaultCredentials{UserID: "u", KeyFile: key}
	if err := c.Probe(ctx); err != nil {
		t.Errorf("probe: %v", err)
	}
	f.failNext("MonCommand", fakeErrno(syscall.ETIMEDOUT))
	if err := c.Probe(ctx); codeOf(err) != backend.Unavailable || !strings.Contains(err.Error(), "10.0.0.5:6789") {
		t.Errorf("probe, monitors silent: %v", err)
	}
}

// codeOK stands for success in the tables.
const codeOK backend.Code = -1

func codeOf(err error) backend.Code {
	if err == nil {
		return codeOK
	}
	return backend.CodeOf(err)
}

// Each image open is about ten round trips (librbd reads the ID, the header, the snapshot
// context, the metadata overrides...; 9 ms of a 47 ms delete on the local cluster): a plain
// create opens none (the record goes to the header by the ID read from rbd_id), and lists
// no trash beside the image it makes (the sweep queues what a killed attempt left there);
// a plain delete opens none either (the ID, one read of the header, one notify).
// Entries of an earlier attempt whose purge was never queued are the sweep's.
func TestRoundTripsPerCreateAndDelete(t *testing.T) {
	c, f := newFakeController(t)
	mustCreate(t, c, volReq("warm", gib)) // the namespace is checked once per controller
	f.resetCalls()
	v := mustCreate(t, c, volReq("pvc-1", gib))
	opens := func() int { return f.count("OpenImage") + f.count("OpenImageReadOnly") }
	if n, trash := opens(), f.count("TrashEntries"); n != 0 || trash != 0 {
		t.Errorf("create opened the image %d times and listed the trash %d times: %v", n, trash, f.calls)
	}
	f.resetCalls()
	if err := c.DeleteVolume(context.Background(), v.ID, nil); err != nil {
		t.Fatal(err)
	}
	// Nor does it list the trash, whose entries grow with a burst of deletes (10,000
	// deletes in make bench-scale slowed to a fifth of their first rate by the end).
	if n, trash := opens(), f.count("TrashEntries"); n != 0 || trash != 0 {
		t.Errorf("delete opened the image %d times and listed the trash %d times, want neither: %v", n, trash, f.calls)
	}
	// An image with snapshots, or open elsewhere, is read in full (an open).
	w := mustCreate(t, c, volReq("pvc-2", gib))
	f.watch(f.image("rbd", "t1", imageName(w.ID.Hash)), 91, "10.0.0.91:0/5", true)
	f.resetCalls()
	if err := c.DeleteVolume(context.Background(), w.ID, nil); codeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), "10.0.0.91:0/5") {
		t.Errorf("delete of an image open on a node: %v, want FAILED_PRECONDITION naming its address", err)
	}
}

// A delete whose first read times out answers the timeout: it does not read the image a
// second time (an open, as long again against a stopped OSD) before the request can end.
func TestDeleteAnswersAStorageFailureOnce(t *testing.T) {
	c, f := newFakeController(t)
	v := mustCreate(t, c, volReq("pvc-1", gib))
	f.resetCalls()
	f.failNext("ImageID", fakeErrno(syscall.ETIMEDOUT))
	err := c.DeleteVolume(context.Background(), v.ID, nil)
	if code := codeOf(err); code == codeOK || code == backend.NotFound {
		t.Fatalf("delete with its first read timing out: %v", err)
	}
	if n := f.count("OpenImageReadOnly") + f.count("OpenImage"); n != 0 {
		t.Errorf("the delete read the image again after a timeout (%d opens): %v", n, f.calls)
	}
	if f.image("rbd", "t1", imageName(v.ID.Hash)) == nil {
		t.Error("the image went")
	}
}

// An earlier attempt that moved its image to the trash and died before queueing the purge
// leaves an entry of the name; the controller's sweep (at start-up and every
// collectInterval) queues it, the next create of the name does not look for it.
func TestAnEarlierAttemptsTrashEntryIsPurgedByTheSweep(t *testing.T) {
	c, f := newFakeController(t)
	v := mustCreate(t, c, volReq("pvc-1", gib))
	io, _ := f.OpenPool("rbd")
	io.SetNamespace("t1")
	if err := io.TrashImage(imageName(v.ID.Hash)); err != nil {
		t.Fatal(err)
	}
	again := mustCreate(t, c, volReq("pvc-1", gib))
	if f.image("rbd", "t1", imageName(again.ID.Hash)) == nil {
		t.Error("no image after the create")
	}
	if _, err := c.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := f.trashed("rbd", "t1"); len(left) != 0 {
		t.Errorf("the earlier attempt's trash entry was not purged: %d left", len(left))
	}
}

// An adopted image outside its tenant's namespace (ceph-csi's, in the pool's default
// namespace) is out of reach of the tenant's identity, whose caps stop at the tenant's
// namespace: publishing that identity made the node's stage fail (rbd-fuse hung on the
// lookup). Such a volume is published without one and staged with its PV's node-stage
// secret; a volume in the tenant's namespace still gets the tenant's identity.
func TestPublishAdoptedImageOutsideTheTenantNamespace(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	io, _ := f.OpenPool("rbd")
	if err := io.CreateImage("legacy", gib, 1); err != nil { // layering only
		t.Fatal(err)
	}
	adopted, err := c.Adopt(ctx, &backend.AdoptRequest{Object: "rbd//legacy", Tenant: "t1", Name: "pv-legacy",
		Parameters: map[string]string{ParamMounter: MounterFuse}})
	if err != nil {
		t.Fatal(err)
	}
	node := backend.Node{Name: "n1"}
	pc, err := c.PublishVolume(ctx, adopted.ID, node, backend.PublishAccess{SingleNode: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pc[ceph.PublishContextUser] != "" || pc[ceph.PublishContextKey] != "" {
		t.Errorf("an image in the default namespace was published with identity %q, whose caps stop at namespace t1", pc[ceph.PublishContextUser])
	}
	own := mustCreate(t, c, volReq("pvc-1", gib))
	pc, err = c.PublishVolume(ctx, own.ID, node, backend.PublishAccess{SingleNode: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pc[ceph.PublishContextUser] != "shiphold.rbd1.t1" || pc[ceph.PublishContextKey] == "" {
		t.Errorf("a volume in the tenant's namespace got publish context %v, want the tenant's identity", pc)
	}
}

// The tenant's identity is made with its first volume and removed with its last. A create
// asks the mon only until the identity is known (a mon command each, in a burst of creates,
// queues on the mon); a delete reads whether other images are left once the image has
// moved to the trash, beside the queueing of its purge, and only once.
func TestTenantIdentityFollowsItsVolumes(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	user, _ := ceph.IdentityUser(c.name, "t1")
	has := func() bool { _, ok := f.auth.Get("client." + user); return ok }

	v1 := mustCreate(t, c, volReq("pvc-1", gib))
	if !has() {
		t.Fatal("no tenant identity after the tenant's first volume")
	}
	f.resetCalls()
	v2 := mustCreate(t, c, volReq("pvc-2", gib))
	if n := f.count("MonCommand"); n != 0 {
		t.Errorf("the second create of the tenant sent %d mon commands (the identity is known): %v", n, f.calls)
	}
	f.resetCalls()
	if err := c.DeleteVolume(ctx, v1.ID, nil); err != nil {
		t.Fatal(err)
	}
	if !has() {
		t.Fatal("the identity went while the tenant still has a volume")
	}
	if n := f.count("ListPools"); n != 1 {
		t.Errorf("the delete looked for the tenant's other images %d times, want once: %v", n, f.calls)
	}
	f.resetCalls()
	if err := c.DeleteVolume(ctx, v2.ID, nil); err != nil {
		t.Fatal(err)
	}
	if has() {
		t.Fatal("the identity stayed after the tenant's last volume")
	}
	if n := f.count("ListPools"); n != 1 {
		t.Errorf("the delete of the last volume looked for the tenant's images %d times, want once: %v", n, f.calls)
	}
	// Made again with the next first volume: this controller forgot it when it removed it.
	v3 := mustCreate(t, c, volReq("pvc-3", gib))
	if !has() {
		t.Fatal("no identity for the tenant's new first volume")
	}

	// The identity's removal fails after the image is in the trash (a crash there would do
	// the same): the retry finds the volume gone and removes the identity.
	f.failNext("MonCommand", fakeErrno(syscall.ETIMEDOUT))
	if err := c.DeleteVolume(ctx, v3.ID, nil); err == nil {
		t.Fatal("DeleteVolume answered OK while the identity's removal failed")
	}
	if f.image("rbd", "t1", imageName(v3.ID.Hash)) != nil || !has() {
		t.Fatal("want the image in the trash and the identity left by the failed step")
	}
	if err := c.DeleteVolume(ctx, v3.ID, nil); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if has() {
		t.Fatal("the retry left the identity")
	}
}

// Deletes of a tenant's last volumes side by side: each may see the others' images, still
// listed, while its own moves to the trash; those count as gone, so the identity goes.
func TestTenantIdentityGoesWithTwoLastVolumesDeletedTogether(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	user, _ := ceph.IdentityUser(c.name, "t1")
	var ids []volid.Volume
	for i := 0; i < 8; i++ {
		ids = append(ids, mustCreate(t, c, volReq(fmt.Sprintf("pvc-%d", i), gib)).ID)
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.DeleteVolume(ctx, id, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if _, ok := f.auth.Get("client." + user); ok {
		t.Fatal("the identity stayed after the tenant's volumes were deleted together")
	}
}

// The tenant's identity is made while the image is; an image made while the identity
// failed is not recorded but discarded, so a refused create leaves nothing (the CO may
// take the refusal as final), and the retry makes both.
func TestCreateVolumeDiscardsTheImageWhenTheIdentityFails(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	user, _ := ceph.IdentityUser(c.name, "t1")
	f.failNext("MonCommand", fakeErrno(syscall.EACCES))
	req := volReq("pvc-1", gib)
	_, err := c.CreateVolume(ctx, req)
	if err == nil {
		t.Fatal("CreateVolume answered OK while the tenant's identity could not be made")
	}
	if !strings.Contains(err.Error(), "tenant identity") {
		t.Errorf("error %v does not say the identity failed", err)
	}
	if img := f.image("rbd", "t1", imageName(volid.Hash("pvc-1"))); img != nil {
		t.Fatalf("the refused create left image %s (record %q)", img.name, img.meta[recordKey])
	}
	if left := f.trashed("rbd", "t1"); len(left) != 0 {
		t.Errorf("the discarded image's purge was not queued: %d trash entries", len(left))
	}
	v := mustCreate(t, c, req)
	img := f.image("rbd", "t1", imageName(v.ID.Hash))
	if rec, err := decodeRecord(img.meta[recordKey]); err != nil || rec.Name != "pvc-1" {
		t.Errorf("retry's record %+v, %v", rec, err)
	}
	if _, ok := f.auth.Get("client." + user); !ok {
		t.Error("no identity after the retry")
	}
}

// gatedMon holds the mon's answers until every create of a burst waits on it, or, when
// fewer do (the others wait for one setup), until a while after the burst's images exist.
type gatedMon struct {
	*fakeCluster
	waiting atomic.Int32
	release chan struct{}
}

func (g *gatedMon) MonCommand(buf []byte) ([]byte, string, error) {
	g.waiting.Add(1)
	<-g.release
	return g.fakeCluster.MonCommand(buf)
}

// A burst of a new tenant's first creates makes the tenant's identity once: one read and
// one auth get-or-create, not one each per create queued on the mon.
func TestBurstOfFirstCreatesMakesTheIdentityOnce(t *testing.T) {
	f := newFakeCluster()
	g := &gatedMon{fakeCluster: f, release: make(chan struct{})}
	cfg := Config{Pool: "rbd", Cluster: ceph.Cluster{ClusterID: "c1", Monitors: []string{"10.0.0.5:6789"}}}
	c := newController("rbd1", cfg, func(context.Context, map[string]string) (connection, error) { return g, nil })
	const burst = 8
	var wg sync.WaitGroup
	for i := 0; i < burst; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.CreateVolume(context.Background(), volReq(fmt.Sprintf("pvc-%d", i), gib)); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.waiting.Load() < burst && f.count("CreateImage") < burst && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for end := time.Now().Add(200 * time.Millisecond); g.waiting.Load() < burst && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	wg.Wait()
	// The identity is read (auth get) and made (auth get-or-create) once.
	if n := f.count("MonCommand"); n != 2 {
		t.Errorf("a burst of %d first creates sent %d mon commands, want 2: %v", burst, n, f.calls)
	}
}

// gatedMove holds every move to the trash until released.
type gatedMove struct {
	*fakeCluster
	moving  chan struct{}
	release chan struct{}
}

func (g *gatedMove) OpenPool(name string) (ioctx, error) {
	io, err := g.fakeCluster.OpenPool(name)
	if err != nil {
		return nil, err
	}
	return &gatedMoveIO{io, g}, nil
}

type gatedMoveIO struct {
	ioctx
	g *gatedMove
}

func (io *gatedMoveIO) TrashImage(name string) error {
	io.g.moving <- struct{}{}
	<-io.g.release
	return io.ioctx.TrashImage(name)
}

// The move to the trash, a delete's longest call, runs alone: the trash listing and the
// search for the tenant's other images wait until it is done (on a busy OSD they slowed
// the move by more than they saved).
func TestDeleteMovesToTheTrashAlone(t *testing.T) {
	f := newFakeCluster()
	g := &gatedMove{fakeCluster: f, moving: make(chan struct{}), release: make(chan struct{})}
	cfg := Config{Pool: "rbd", Cluster: ceph.Cluster{ClusterID: "c1", Monitors: []string{"10.0.0.5:6789"}}}
	c := newController("rbd1", cfg, func(context.Context, map[string]string) (connection, error) { return g, nil })
	c.SetTaskWait(0)
	v := mustCreate(t, c, volReq("pvc-1", gib))
	done := make(chan error, 1)
	go func() { done <- c.DeleteVolume(context.Background(), v.ID, nil) }()
	<-g.moving
	f.resetCalls()
	for end := time.Now().Add(200 * time.Millisecond); len(f.snapshotCalls()) == 0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	during := f.snapshotCalls()
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(during) > 0 {
		t.Errorf("calls made while the image moved to the trash: %v", during)
	}
	if f.image("rbd", "t1", imageName(v.ID.Hash)) != nil || len(f.trashed("rbd", "t1")) != 0 {
		t.Error("the image or its trash entry is left")
	}
}

// A delete looks for the tenant's other images only until it finds one: with many images
// left it reads one page of the image directory, not all of it.
func TestDeleteReadsOnePageOfTheTenantsImages(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	user, _ := ceph.IdentityUser(c.name, "t1")
	const volumes = 3 * hashPageMin
	var ids []volid.Volume
	for i := 0; i < volumes; i++ {
		ids = append(ids, mustCreate(t, c, volReq(fmt.Sprintf("pvc-%03d", i), gib)).ID)
	}
	for i, id := range ids {
		f.mu.Lock()
		f.namesRead = 0
		f.mu.Unlock()
		if err := c.DeleteVolume(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		read := f.namesRead
		f.mu.Unlock()
		// The last page holds what is left; only the tenant's last delete may read all.
		if left := volumes - i - 1; left > 0 && read > hashPageMin {
			t.Fatalf("delete %d of %d read %d image names, want at most a page (%d)", i+1, volumes, read, hashPageMin)
		}
		if _, ok := f.auth.Get("client." + user); ok != (i < volumes-1) {
			t.Fatalf("after delete %d of %d the tenant identity is there: %v", i+1, volumes, ok)
		}
	}
}

// A page of ListVolumes reads about a page of the image directory, not the whole tenant's
// (the O(page) at 10,000 volumes), and the pages still list every volume once, in
// ID order, past images that are not volumes (a user's image, a name of another form).
// The first page also reads every name for adopted images (adoptedVolumes), and is not
// bounded here.
func TestListVolumesPageReadsAPageOfNames(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	const volumes, page = 5 * hashPageMin, 10
	var want []string
	for i := 0; i < volumes; i++ {
		want = append(want, mustCreate(t, c, volReq(fmt.Sprintf("pvc-%03d", i), gib)).ID.String())
	}
	sort.Strings(want)
	f.mu.Lock()
	io := &fakeIO{f: f, p: f.pools["rbd"], ns: "t1"}
	for _, n := range []string{"aaa-user-image", "csi-vol-short", "zzz-user-image"} {
		if _, err := io.newImage(n, gib); err != nil {
			f.mu.Unlock()
			t.Fatal(err)
		}
	}
	f.mu.Unlock()
	var got []string
	for after := ""; ; {
		f.mu.Lock()
		f.namesRead = 0
		f.mu.Unlock()
		vols, err := c.ListVolumesAfter(ctx, after, page)
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		read := f.namesRead
		f.mu.Unlock()
		if after != "" && read > 2*hashPageMin {
			t.Fatalf("the page after %q read %d image names of %d, want about a page", after, read, volumes)
		}
		if len(vols) == 0 {
			break
		}
		if len(got) > volumes {
			t.Fatalf("the pages go on past %d volumes", volumes)
		}
		for _, v := range vols {
			got = append(got, v.ID.String())
		}
		after = got[len(got)-1]
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged %d volumes, want the %d created in ID order", len(got), len(want))
	}
}

// The first page reads every namespace's image directory for images shiphold adopted
// (adoptedVolumes): pageReaders directories at a time, not one after another. With 1,000
// tenants (make bench-scale) the first page took 3.2 s.
func TestListVolumesFirstPageReadsTheTenantsDirectoriesAtOnce(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		r := volReq("pvc-1", gib)
		r.Tenant = fmt.Sprintf("tenant-%02d", i)
		mustCreate(t, c, r)
	}
	f.listDelay = 5 * time.Millisecond
	vols, err := c.ListVolumesAfter(ctx, "", 10)
	if err != nil || len(vols) != 10 {
		t.Fatalf("first page: %d volumes, %v", len(vols), err)
	}
	if n := f.maxListing.Load(); n < pageReaders/2 {
		t.Errorf("at most %d image directories were read at once, want up to %d", n, pageReaders)
	}
}

// A page of every tenant's volumes reads its images pageReaders at a time across the
// tenants it spans, not one tenant's images after another's: with 1,000 tenants of 2
// volumes (make bench-scale) a page of 100 waited on 50 rounds of 2 opens (830 ms).
func TestListVolumesPageReadsAcrossTenantsAtOnce(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	var want []string
	for i := 0; i < 30; i++ {
		for j := 0; j < 2; j++ {
			r := volReq(fmt.Sprintf("pvc-%d", j), gib)
			r.Tenant = fmt.Sprintf("tenant-%02d", i)
			v := mustCreate(t, c, r)
			if i%3 == 0 && j == 0 {
				// Another backend's image: passed over, so a page reads on to fill up.
				f.image("rbd", r.Tenant, imageName(v.ID.Hash)).meta[recordKey] = volumeRecord{Backend: "other"}.encode()
				continue
			}
			want = append(want, v.ID.String())
		}
	}
	sort.Strings(want)
	f.headerDelay = 5 * time.Millisecond
	f.resetCalls()
	var got []string
	for after := ""; ; {
		vols, err := c.ListVolumesAfter(ctx, after, 40)
		if err != nil {
			t.Fatal(err)
		}
		if len(vols) > 40 {
			t.Fatalf("a page of 40 listed %d volumes", len(vols))
		}
		if len(vols) == 0 {
			break
		}
		for _, v := range vols {
			got = append(got, v.ID.String())
		}
		after = got[len(got)-1]
		if len(got) > len(want) {
			t.Fatalf("the pages go on past %d volumes", len(want))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged %d volumes, want the %d created in ID order", len(got), len(want))
	}
	if n := f.maxReading.Load(); n < pageReaders/2 {
		t.Errorf("at most %d images were read at once, want up to %d across tenants", n, pageReaders)
	}
	if n := f.count("OpenImageReadOnly") + f.count("OpenImage"); n != 0 {
		t.Errorf("the pages opened %d images; their headers tell size and record", n)
	}
}
