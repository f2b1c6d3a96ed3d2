package cephfstest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ceph/go-ceph/cephfs"
	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	cephfsbe "github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/volid"
)

// recordXattr is where shiphold keeps a volume's request record: on the subvolume's base
// directory, /volumes/<group>/<subvolume>.
const recordXattr = "user.shiphold.request"

// TestCephFSRealRecordOnTheStorage: the request record is on the subvolume's base
// directory, read back through a libcephfs mount of the test's own; the path the driver
// reports is the one the mgr reports; volumes made by earlier versions (record as
// subvolume metadata) and subvolumes of a create that died before its record keep
// working; a volume deleted with retained snapshots is made anew by the same request.
// Each subtest has a deadline of its own: on a loaded cluster the first three can take
// longer than one deadline together, and the last then began with none left.
func TestCephFSRealRecordOnTheStorage(t *testing.T) {
	e := needCeph(t)
	conn := rawConn(t)
	fsa := admin.NewFromConn(conn)
	mnt, err := cephfs.CreateFromRados(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := mnt.Mount(); err != nil {
		t.Fatalf("libcephfs mount: %v", err)
	}
	t.Cleanup(func() { _ = mnt.Unmount(); _ = mnt.Release() })
	group := e.cfg.Section.(*cephfsbe.Config).SubvolumeGroupPrefix + "team-r"
	t.Cleanup(func() { fsa.RemoveSubVolumeGroup(fsName, group) })
	req := func(name string, size int64) *backend.VolumeRequest {
		return &backend.VolumeRequest{Name: name, Tenant: "team-r", RequiredBytes: size, Parameters: map[string]string{}}
	}
	recordOf := func(name string) (map[string]any, error) {
		raw, err := mnt.GetXattr("/volumes/"+group+"/csi-vol-"+volid.Hash(name), recordXattr)
		if err != nil {
			return nil, err
		}
		var rec map[string]any
		return rec, json.Unmarshal(raw, &rec)
	}

	t.Run("new", func(t *testing.T) {
		ctx := ctxT(t)
		v, err := e.ctrl.CreateVolume(ctx, req("pvc-rec-new", 64<<20))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), v.ID, nil) })
		rec, err := recordOf("pvc-rec-new")
		if err != nil || rec["name"] != "pvc-rec-new" || rec["bytes"] != float64(64<<20) {
			t.Fatalf("record on the base directory: %v %v", rec, err)
		}
		// The create finds no path (no readdir, no mgr command); the publish hands it on.
		if p, ok := v.Context[cephfsbe.CtxRootPath]; ok {
			t.Fatalf("the create answered root path %q", p)
		}
		path, err := fsa.SubVolumePath(fsName, group, "csi-vol-"+v.ID.Hash)
		if got := publishedPath(t, e.ctrl, v); err != nil || got != path {
			t.Fatalf("published root path %q, the mgr says %q (%v)", got, path, err)
		}
	})

	t.Run("earlier-version", func(t *testing.T) {
		ctx := ctxT(t)
		name := "pvc-rec-old"
		sub := "csi-vol-" + volid.Hash(name)
		if err := fsa.CreateSubVolumeGroup(fsName, group, nil); err != nil {
			t.Fatal(err)
		}
		if err := fsa.CreateSubVolume(fsName, group, sub, &admin.SubVolumeOptions{Size: 32 << 20}); err != nil {
			t.Fatal(err)
		}
		old := fmt.Sprintf(`{"name":%q,"bytes":%d,"params":{"fsName":%q,"mounter":"auto"}}`, name, 32<<20, fsName)
		mgr(t, conn, map[string]any{"prefix": "fs subvolume metadata set", "vol_name": fsName, "group_name": group,
			"sub_name": sub, "key_name": "shiphold.request", "value": old})
		v, err := e.ctrl.CreateVolume(ctx, req(name, 32<<20))
		if err != nil || v.RequestName != name || v.CapacityBytes != 32<<20 {
			t.Fatalf("retry of an earlier version's volume: %+v %v", v, err)
		}
		// One conflict rule (backend.RequestRecord.Conflict): a smaller request the volume
		// satisfies is a retry; a larger one is a conflict, also for an earlier record.
		if _, err := e.ctrl.CreateVolume(ctx, req(name, 16<<20)); err != nil {
			t.Fatalf("smaller size the volume satisfies: %v, want the volume", err)
		}
		if _, err := e.ctrl.CreateVolume(ctx, req(name, 64<<20)); !isCode(err, backend.AlreadyExists) {
			t.Fatalf("larger size: %v, want AlreadyExists", err)
		}
		if got, err := e.ctrl.GetVolume(ctx, v.ID, nil); err != nil || got.RequestName != name {
			t.Fatalf("GetVolume: %+v %v", got, err)
		}
		if err := e.ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := fsa.SubVolumeInfo(fsName, group, sub); err == nil {
			t.Fatal("subvolume left after DeleteVolume")
		}
	})

	t.Run("adopt", func(t *testing.T) {
		ctx := ctxT(t)
		name := "pvc-rec-adopt"
		sub := "csi-vol-" + volid.Hash(name)
		if err := fsa.CreateSubVolumeGroup(fsName, group, nil); err != nil {
			t.Fatal(err)
		}
		if err := fsa.CreateSubVolume(fsName, group, sub, &admin.SubVolumeOptions{Size: 32 << 20}); err != nil {
			t.Fatal(err)
		}
		path, _ := fsa.SubVolumePath(fsName, group, sub)
		v, err := e.ctrl.CreateVolume(ctx, req(name, 32<<20))
		if err != nil {
			t.Fatalf("adopting a subvolume without record: %v", err)
		}
		t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), v.ID, nil) })
		if got := publishedPath(t, e.ctrl, v); got != path {
			t.Fatalf("adopted volume published at %q, the subvolume is at %q", got, path)
		}
		if rec, err := recordOf(name); err != nil || rec["name"] != name {
			t.Fatalf("adopted subvolume's record: %v %v", rec, err)
		}
	})

	t.Run("retained", func(t *testing.T) {
		ctx := ctxT(t)
		name := "pvc-rec-retained"
		v, err := e.ctrl.CreateVolume(ctx, req(name, 32<<20))
		if err != nil {
			t.Fatal(err)
		}
		snap, err := e.ctrl.CreateSnapshot(ctx, v.ID, "snap-rec-retained", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
			t.Fatal(err)
		}
		// The record outlives the data directory; the volume is gone all the same.
		if err := e.ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
			t.Fatalf("second DeleteVolume: %v", err)
		}
		if _, err := e.ctrl.GetVolume(ctx, v.ID, nil); !isCode(err, backend.NotFound) {
			t.Fatalf("GetVolume of a deleted volume: %v, want NotFound", err)
		}
		// Ceph answers EAGAIN (Pending) while it purges the deleted data directory.
		again := e.createRetrying(t, req(name, 48<<20))
		if again.CapacityBytes != 48<<20 {
			t.Fatalf("the same request name after a delete with retained snapshots: %+v", again)
		}
		// The purge can take minutes on a busy cluster: the calls after it get their own
		// deadline, not what is left of the subtest's.
		ctx = ctxT(t)
		if err := e.ctrl.DeleteSnapshot(ctx, snap.ID, nil); err != nil {
			t.Fatal(err)
		}
		if err := e.ctrl.DeleteVolume(ctx, again.ID, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// mgr sends one mgr command as admin.
func mgr(t *testing.T, conn interface {
	MgrCommand([][]byte) ([]byte, string, error)
}, cmd map[string]any) {
	t.Helper()
	cmd["format"] = "json"
	buf, _ := json.Marshal(cmd)
	if _, status, err := conn.MgrCommand([][]byte{buf}); err != nil {
		t.Fatalf("%s: %v %s", cmd["prefix"], err, strings.TrimSpace(status))
	}
}

// publishedPath is the data directory PublishVolume hands a node for v.
func publishedPath(t *testing.T, c *cephfsbe.Controller, v *backend.Volume) string {
	t.Helper()
	pc, err := c.PublishVolume(ctxT(t), v.ID, backend.Node{Name: "node-rec"}, backend.PublishAccess{SingleNode: true}, v.Context, nil)
	if err != nil {
		t.Fatalf("publish %s: %v", v.ID, err)
	}
	return pc[cephfsbe.PublishContextRootPath]
}
