package cephfs

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

const teamAUser = "client.shiphold.fs1.team-a"

// The tenant's first volume puts its group's files in the tenant's namespace and makes the
// tenant's identity, whose caps reach that group and namespace only; a publish hands the
// node that identity, and the last delete removes it.
func TestTenantIdentityLifecycle(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v1, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if ns := f.groupNS["shiphold-team-a"]; ns != "shiphold-team-a" {
		t.Errorf("group layout pool_namespace = %q, want shiphold-team-a", ns)
	}
	u, ok := f.auth[teamAUser]
	want := map[string]string{"mon": "allow r", "mds": "allow rw path=/volumes/shiphold-team-a", "osd": "allow rw pool=cephfs.data namespace=shiphold-team-a"}
	if !ok || !equalCaps(u.caps, want) {
		t.Fatalf("identity after the first create: %v (exists %v), want caps %v", u.caps, ok, want)
	}
	v2, err := c.CreateVolume(ctx, volReq("pvc-2", 1<<20))
	if err != nil {
		t.Fatal(err)
	}

	pc, err := c.PublishVolume(ctx, v1.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pc[ceph.PublishContextUser] != "shiphold.fs1.team-a" || pc[ceph.PublishContextKey] != f.auth[teamAUser].key {
		t.Errorf("publish context %v, want the tenant's identity and key", pc)
	}
	// A republish (idempotent) hands out the same identity.
	if pc2, err := c.PublishVolume(ctx, v1.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil); err != nil || pc2[ceph.PublishContextKey] != pc[ceph.PublishContextKey] {
		t.Errorf("republish: %v %v", pc2, err)
	}

	if err := c.DeleteVolume(ctx, v1.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.auth[teamAUser]; !ok {
		t.Fatal("identity removed while the tenant still has a volume")
	}
	if err := c.DeleteVolume(ctx, v2.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.auth[teamAUser]; ok {
		t.Fatal("identity still there after the tenant's last volume was deleted")
	}
	// The tenant's next volume is a first volume again.
	if _, err := c.CreateVolume(ctx, volReq("pvc-3", 1<<20)); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.auth[teamAUser]; !ok {
		t.Fatal("no identity made with the tenant's first volume after the last one went")
	}
}

// A subvolume made before tenant identities keeps its files in the pool's default
// namespace, which the tenant's identity cannot read: its publish hands out no key, and the
// node mounts with the node-stage secret as before.
func TestPublishLegacyVolumeHandsNoKey(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v, err := c.CreateVolume(ctx, volReq("pvc-old", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	f.subs["shiphold-team-a/"+subvolumeName(v.ID.Hash)].poolNS = "" // as made by an older shiphold
	pc, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pc[ceph.PublishContextKey]; ok {
		t.Fatalf("legacy volume published with a tenant key: %v", pc)
	}
}

// A publish puts back caps changed by hand, and makes an identity removed by hand again.
func TestPublishRestoresIdentity(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	v, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	u := f.auth[teamAUser]
	u.caps = map[string]string{"mon": "allow r", "mds": "allow rw", "osd": "allow rw pool=cephfs.data"}
	f.auth[teamAUser] = u
	if _, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1"}, backend.PublishAccess{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.auth[teamAUser].caps["mds"]; got != "allow rw path=/volumes/shiphold-team-a" {
		t.Errorf("mds caps after publish = %q", got)
	}
	delete(f.auth, teamAUser)
	pc, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n2"}, backend.PublishAccess{}, nil, nil)
	if err != nil || pc[ceph.PublishContextKey] == "" || pc[ceph.PublishContextKey] != f.auth[teamAUser].key {
		t.Errorf("publish after the identity was removed: %v %v", pc, err)
	}
}

func TestRotateTenantKey(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	if ok, err := c.RotateTenantKey(ctx, "team-a"); ok || err != nil {
		t.Fatalf("rotate without identity = %v, %v", ok, err)
	}
	if _, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20)); err != nil {
		t.Fatal(err)
	}
	old := f.auth[teamAUser]
	if ok, err := c.RotateTenantKey(ctx, "team-a"); !ok || err != nil {
		t.Fatalf("rotate = %v, %v", ok, err)
	}
	now := f.auth[teamAUser]
	if now.key == old.key || !equalCaps(now.caps, old.caps) {
		t.Errorf("rotated key %q (old %q), caps %v (were %v)", now.key, old.key, now.caps, old.caps)
	}
}

func equalCaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Whether a delete took the tenant's last volume is read from the group's directory up to
// its first subvolume, not through all of it: a tenant of thousands of volumes pays one
// entry per delete.
func TestDeleteReadsTheGroupUntilItsFirstSubvolume(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	var ids []*backend.Volume
	for i := 0; i < 40; i++ {
		v, err := c.CreateVolume(ctx, volReq(fmt.Sprintf("pvc-%d", i), 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v)
	}
	f.entriesRead = 0
	if err := c.DeleteVolume(ctx, ids[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	if f.entriesRead > 1 {
		t.Errorf("the delete read %d entries of a group of 39 subvolumes, want 1", f.entriesRead)
	}
	if _, ok := f.auth[teamAUser]; !ok {
		t.Fatal("identity removed while the tenant still has volumes")
	}
}

// A delete reads whether the tenant keeps another subvolume while the mgr removes this one,
// so the read may find the one being removed still there: it does not count. The tenant's
// last volume takes its identity along; one beside another leaves it.
func TestDeleteDecidesTheIdentityWhileTheMgrRemoves(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	f.slow = map[string]time.Duration{"fs subvolume rm": 50 * time.Millisecond}
	v1, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.CreateVolume(ctx, volReq("pvc-2", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, v1.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.auth[teamAUser]; !ok {
		t.Fatal("identity removed while the tenant keeps a volume")
	}
	f.mu.Lock()
	f.fsOps = nil
	f.mu.Unlock()
	if err := c.DeleteVolume(ctx, v2.ID, nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	read := slices.Contains(f.fsOps, "group /volumes/shiphold-team-a")
	f.mu.Unlock()
	if _, ok := f.auth[teamAUser]; ok || !read {
		t.Errorf("after the tenant's last delete: identity still there %v, group read %v; want it gone, decided from the group", ok, read)
	}
	// A retry of the delete finds nothing, and removes nothing more.
	if err := c.DeleteVolume(ctx, v2.ID, nil); err != nil {
		t.Fatal(err)
	}
}
