package cephfs

import (
	"context"
	"testing"
)

// A clone from a volume that fails takes its temporary snapshot of the source with it.
func TestFailedCloneDropsTemporarySnapshot(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	src, err := c.CreateVolume(ctx, volReq("pvc-src", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	req := volReq("pvc-clone", 1<<20)
	req.SourceVolume = &src.ID
	f.cloneFail = true
	if _, err := c.CreateVolume(ctx, req); err == nil {
		t.Fatal("a failed clone reported success")
	}
	if f.subs["shiphold-team-a/csi-vol-"+req.ID("fs1", "1").Hash] != nil {
		t.Fatal("failed clone left behind")
	}
	if snaps := f.subs["shiphold-team-a/csi-vol-"+src.ID.Hash].snaps; len(snaps) != 0 {
		t.Fatalf("temporary snapshot outlived the failed clone: %v", snaps)
	}
}

// Deleting a source removes temporary clone snapshots whose clone is gone, so that Ceph
// does not keep the source for ever in state snapshot-retained.
func TestDeleteSourceDropsOrphanCloneSnapshots(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	src, err := c.CreateVolume(ctx, volReq("pvc-src", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	key := "shiphold-team-a/csi-vol-" + src.ID.Hash
	f.subs[key].snaps[cloneSnapName("0123456789abcdef")] = true
	if err := c.DeleteVolume(ctx, src.ID, nil); err != nil {
		t.Fatal(err)
	}
	if f.subs[key] != nil {
		t.Fatalf("source kept (retained %v) with snapshots %v", f.subs[key].retained, f.subs[key].snaps)
	}
}
