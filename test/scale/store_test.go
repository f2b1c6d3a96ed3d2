package scale

import (
	"fmt"
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

// dropNamespaces waits for each tenant's RBD trash to be purged (DeleteVolume queues the
// purge) and removes its namespace.
func (s *store) dropNamespaces(t *testing.T, tenants []string) {
	t.Helper()
	for _, ns := range tenants {
		s.io.SetNamespace(ns)
		harness.WaitFor(t, "rbd trash of namespace "+ns, 10*time.Minute, func() (bool, string) {
			entries, err := librbd.GetTrashList(s.io)
			return err != nil || len(entries) == 0, fmt.Sprintf("%d entries", len(entries))
		})
		s.io.SetNamespace("")
		_ = librbd.NamespaceRemove(s.io, ns)
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
