package scale

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/cephfs/admin"
	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/test/harness"
)

// store is the bench's own admin connection to the local cluster, for cleanup only.
type store struct {
	conn *rados.Conn
	io   *rados.IOContext
	fsa  *admin.FSAdmin
}

func openStore(t *testing.T) *store {
	t.Helper()
	conn, err := rados.NewConnWithUser("admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadConfigFile(harness.CephConf()); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetConfigOption("keyring", filepath.Join(harness.CephDir(), "ceph.client.admin.keyring")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Connect(); err != nil {
		t.Fatal(err)
	}
	io, err := conn.OpenIOContext("rbd")
	if err != nil {
		conn.Shutdown()
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the connection outlives the runs' cleanups.
	t.Cleanup(func() { io.Destroy(); conn.Shutdown() })
	return &store{conn: conn, io: io, fsa: admin.NewFromConn(conn)}
}

// drainWait bounds how long a part waits for the RBD trash to drain after its deletes.
const drainWait = 40 * time.Minute

// drained waits until the tenants' RBD namespaces hold no trash entry, reading them every
// few seconds, and answers how long that took from since, with the entries left when
// drainWait ran out (0 once drained).
func (s *store) drained(t *testing.T, tenants []string, since time.Time) (time.Duration, int) {
	t.Helper()
	for {
		left := 0
		for _, ns := range tenants {
			s.io.SetNamespace(ns)
			entries, err := librbd.GetTrashList(s.io)
			if err != nil && !errors.Is(err, librbd.ErrNotFound) {
				t.Fatalf("trash of rbd/%s: %v", ns, err)
			}
			left += len(entries)
		}
		s.io.SetNamespace("")
		if left == 0 || time.Since(since) > drainWait {
			return time.Since(since), left
		}
		time.Sleep(3 * time.Second)
	}
}

// purgeWait bounds how long the end of the bench waits for the RBD trash purge of one part.
const purgeWait = 2 * time.Minute

// dropNamespaces removes the tenants' RBD namespaces, each once the mgr purged the trash
// entries that DeleteVolume left in it, for at most purgeWait; the rest is logged.
func (s *store) dropNamespaces(t *testing.T, tenants []string) {
	t.Helper()
	left := tenants
	deadline := time.Now().Add(purgeWait)
	for len(left) > 0 {
		var busy []string
		for _, ns := range left {
			if err := librbd.NamespaceRemove(s.io, ns); err != nil && !errors.Is(err, librbd.ErrNotExist) && !errors.Is(err, librbd.ErrNotFound) {
				busy = append(busy, ns)
			}
		}
		if left = busy; len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	if len(left) > 0 {
		t.Logf("%d RBD namespaces (%s, ...) still hold trash entries after %s; they are empty once the mgr's purge queue gets to them (rbd -p rbd namespace rm)", len(left), left[0], purgeWait)
	}
}

// dropGroups removes the tenants' subvolume groups (the subvolumes went to the volumes
// module's trash, which the mgr purges).
func (s *store) dropGroups(t *testing.T, tenants []string) {
	t.Helper()
	for _, tn := range tenants {
		err := s.fsa.RemoveSubVolumeGroup("cephfs", "shiphold-"+tn)
		if err != nil && !strings.Contains(err.Error(), "does not exist") {
			t.Logf("remove subvolume group shiphold-%s: %v", tn, err)
		}
	}
}
