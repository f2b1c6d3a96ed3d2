package cephfs

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// recordIn decodes the request record on the base directory of subvolume group/sub.
func recordIn(t *testing.T, f *fakeMgr, key string) volumeRecord {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	sub := f.subs[key]
	if sub == nil {
		t.Fatalf("no subvolume %s", key)
	}
	raw, ok := sub.xattrs[recordXattr]
	if !ok {
		t.Fatalf("subvolume %s has no %s attribute: %v", key, recordXattr, sub.xattrs)
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		t.Fatalf("record of %s: %v", key, err)
	}
	return rec
}

// The mgr volumes module serves one command at a time, so every mgr command of a create is
// paid by every other create of a burst: a create sends the subvolume create alone, and
// reads and writes its record and path through the MDS.
func TestCreateVolumeSendsOneMgrCommand(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	// The tenant's group is made once per controller.
	if _, err := c.CreateVolume(ctx, volReq("pvc-0", 1<<30)); err != nil {
		t.Fatal(err)
	}
	f.mgrCommands()
	steps := []struct {
		what string
		do   func() error
		want []string
	}{
		{"create", func() error { _, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<30)); return err }, []string{"fs subvolume create"}},
		// A retry reads the size and path of what is there.
		{"retry", func() error { _, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<30)); return err }, []string{"fs subvolume info"}},
		{"delete", func() error {
			return c.DeleteVolume(ctx, volid.Volume{Backend: "fs1", Tenant: "team-a", Location: "1", Hash: volid.Hash("pvc-1")}, nil)
		}, []string{"fs subvolume rm"}},
	}
	var beforeDelete int
	for _, st := range steps {
		beforeDelete = len(f.fsOps)
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		if got := f.mgrCommands(); !slices.Equal(got, st.want) {
			t.Errorf("%s sent mgr commands %q, want %q", st.what, got, st.want)
		}
	}
	// The delete reads its record through the MDS (no mgr command) and, once the subvolume
	// is gone, lists the group's directory: is the tenant's identity still needed?
	if got := f.fsOps[beforeDelete:]; len(got) != 2 || !strings.HasPrefix(got[0], "getxattr ") || got[1] != "group /volumes/shiphold-team-a" {
		t.Errorf("the delete's MDS requests %q, want its record read and the group listing", got)
	}
}

// A volume whose snapshot is being cloned cannot be deleted until the clone is done; a
// clone of ours still copying is cancelled and removed with its temporary snapshot.
func TestDeleteVolumeBusy(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	src, err := c.CreateVolume(ctx, volReq("pvc-src", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.subs["shiphold-team-a/csi-vol-"+src.ID.Hash].inUse = true
	f.mu.Unlock()
	f.mgrCommands()
	if err := c.DeleteVolume(ctx, src.ID, nil); backend.CodeOf(err) != backend.Pending {
		t.Fatalf("DeleteVolume of a busy volume that is no clone: %v, want Pending", err)
	}
	if got := f.mgrCommands(); !slices.Equal(got, []string{"fs subvolume rm", "fs clone status"}) {
		t.Fatalf("busy delete sent %q", got)
	}
}

func TestCreateVolumeRecordsOnTheStorage(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	req := volReq("pvc-1", 1<<30)
	req.Parameters = map[string]string{ParamMounter: MounterFuse}
	v, err := c.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	key := "shiphold-team-a/csi-vol-" + v.ID.Hash
	rec := recordIn(t, f, key)
	if rec.Name != "pvc-1" || rec.Bytes != 1<<30 || rec.Params.Mounter != MounterFuse || rec.Params.FSName != "cephfs" {
		t.Fatalf("record %+v", rec)
	}
	pc, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, v.Context, nil)
	if got, want := pc[PublishContextRootPath], "/volumes/"+key+"/uuid"; err != nil || got != want {
		t.Fatalf("published root path %q (%v), want the data directory %q", got, err, want)
	}
	// A controller that starts afresh finds the volume by its record alone.
	c2, _ := newFakeController(t)
	c2.storage.Connect = c.storage.Connect
	if _, err := c2.CreateVolume(ctx, volReq("pvc-1", 2<<30)); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("other size after a restart: %v, want AlreadyExists", err)
	}
	got, err := c2.GetVolume(ctx, v.ID, nil)
	if err != nil || got.RequestName != "pvc-1" || got.Context[CtxMounter] != MounterFuse {
		t.Fatalf("GetVolume: %+v %v", got, err)
	}
	if _, err := c2.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil); err != nil {
		t.Fatalf("PublishVolume: %v", err)
	}
}

// Volumes made by earlier versions carry their record as subvolume metadata; they keep
// working: a retry succeeds, another size conflicts, and they can be published and deleted.
func TestEarlierRecordFormatStillServed(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	key := "shiphold-team-a/csi-vol-" + volid.Hash("pvc-old")
	old := volumeRecord{Name: "pvc-old", Bytes: 5 << 20, Params: volumeParams{FSName: "cephfs", Mounter: MounterAuto}}
	f.groups["shiphold-team-a"] = true
	f.subs[key] = &fakeSub{quota: 5 << 20, meta: map[string]string{recordKey: old.encode()}, snaps: map[string]bool{}}
	v, err := c.CreateVolume(ctx, volReq("pvc-old", 5<<20))
	if err != nil || v.CapacityBytes != 5<<20 || v.RequestName != "pvc-old" {
		t.Fatalf("retry of an earlier version's volume: %+v %v", v, err)
	}
	if n := len(f.commands("fs subvolume create")); n != 0 {
		t.Fatalf("%d subvolume creates for an existing volume", n)
	}
	if _, err := c.CreateVolume(ctx, volReq("pvc-old", 6<<20)); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("other size: %v, want AlreadyExists", err)
	}
	if got, err := c.GetVolume(ctx, v.ID, nil); err != nil || got.RequestName != "pvc-old" {
		t.Fatalf("GetVolume: %+v %v", got, err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil); err != nil {
		t.Fatalf("PublishVolume: %v", err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	if f.subs[key] != nil {
		t.Fatal("subvolume left after DeleteVolume")
	}
}

// A volume deleted while it had snapshots stays as a retained subvolume whose base
// directory (and record) Ceph keeps; the same request name makes it anew, at any size.
func TestCreateVolumeAfterDeleteWithRetainedSnapshots(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, v.ID, "s1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	key := "shiphold-team-a/csi-vol-" + v.ID.Hash
	if !f.subs[key].retained {
		t.Fatal("the fake did not retain the subvolume")
	}
	// Its record stays on the base directory, yet it is no volume any more.
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatalf("second DeleteVolume: %v", err)
	}
	if _, err := c.GetVolume(ctx, v.ID, nil); !backend.IsNotFound(err) {
		t.Fatalf("GetVolume of a deleted volume: %v, want NotFound", err)
	}
	if _, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil); !backend.IsNotFound(err) {
		t.Fatalf("PublishVolume of a deleted volume: %v, want NotFound", err)
	}
	again, err := c.CreateVolume(ctx, volReq("pvc-1", 2<<20))
	if err != nil || again.CapacityBytes != 2<<20 {
		t.Fatalf("create over a retained subvolume: %+v %v", again, err)
	}
	if sub := f.subs[key]; sub.retained || sub.quota != 2<<20 {
		t.Fatalf("subvolume not made anew: %+v", sub)
	}
	if rec := recordIn(t, f, key); rec.Bytes != 2<<20 {
		t.Fatalf("record %+v, want the new request", rec)
	}
}
