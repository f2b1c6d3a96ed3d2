package isolation

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/test/harness"
)

const cephfsDataPool = "cephfs.cephfs.data"

// Tenant A's CephFS identity reaches A's subvolume group and A's namespace of the data pool
// only: it cannot mount B's subvolume nor read or write B's file objects through RADOS; the
// cluster-wide key can. A's volume is staged, written and read by a node plugin that holds
// no key, and the identities go with their tenants' last volumes.
func TestCephFSTenantIsolation(t *testing.T) {
	harness.RequireCommand(t, "ceph-fuse", "apt-get install ceph-fuse, or hack/install-deps.sh")
	p := startPlugins(t, harness.CephFSBackend(t, "fs"))
	a := p.createPublishStage(t, newTenant("isoa"))
	b := p.createPublishStage(t, newTenant("isob"))
	writeAndRead(t, b, "b-data")
	groupA, groupB := p.be.Section.(*cephfs.Config).SubvolumeGroupPrefix+a.tenant, p.be.Section.(*cephfs.Config).SubvolumeGroupPrefix+b.tenant
	caps := authCaps(t, a.cred().UserID)
	for _, want := range []string{`caps mds = "allow rw path=/volumes/` + groupA + `"`, `caps mon = "allow r"`,
		`caps osd = "allow rw pool=` + cephfsDataPool + ` namespace=` + groupA + `"`} {
		if !strings.Contains(caps, want) {
			t.Errorf("client.%s lacks %s:\n%s", a.cred().UserID, want, caps)
		}
	}

	asA, asCluster := connectAs(t, a.cred()), connectAs(t, adminCred(t))
	// B's file landed in B's namespace of the data pool (the group's layout). Its first
	// object is named by its inode; any object listed there will not do: the mgr rewrites
	// a subvolume's .meta file by a rename, and the old one's objects, still listed, are
	// purged a moment later (seen as ENOENT for the cluster-wide key under load).
	fileObject := dataObject(t, filepath.Join(b.target, "b-data"))
	inB := func(conn *rados.Conn, fn func(io *rados.IOContext) error) error {
		io, err := conn.OpenIOContext(cephfsDataPool)
		if err != nil {
			return err
		}
		defer io.Destroy()
		io.SetNamespace(groupB)
		return fn(io)
	}
	get := func(conn *rados.Conn) func() error {
		return func() error {
			return inB(conn, func(io *rados.IOContext) error {
				n, err := io.Read(fileObject, make([]byte, 4096), 0)
				if err == nil && n == 0 {
					t.Errorf("B's file object %s read empty", fileObject)
				}
				return err
			})
		}
	}
	put := func(conn *rados.Conn) func() error {
		return func() error {
			return inB(conn, func(io *rados.IOContext) error {
				if err := io.WriteFull("shiphold-isolation-probe", []byte("x")); err != nil {
					return err
				}
				return io.Delete("shiphold-isolation-probe")
			})
		}
	}
	mount := func(cred ceph.Credentials) func() error {
		// The publish context names the data directory (the volume context does not).
		return func() error { return fuseMount(t, cred, b.pc["rootPath"]) }
	}
	probe(t, "cephfs", "mount-subvolume", mount(a.cred()), mount(adminCred(t)))
	probe(t, "cephfs", "rados-get", get(asA), get(asCluster))
	probe(t, "cephfs", "rados-put", put(asA), put(asCluster))

	writeAndRead(t, a, "a-data")
	p.nodeHasNoKey(t, a)
	if !t.Failed() {
		fmt.Println("isolation cephfs own-volume: ok")
	}
	unstageAndDelete(t, p, a)
	identityGone(t, a.cred().UserID)
}

// dataObject names the RADOS object holding the first bytes of a file on a CephFS mount:
// <inode in hex>.00000000 (ceph-fuse reports the CephFS inode numbers).
func dataObject(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no inode number for %s", path)
	}
	return fmt.Sprintf("%x.%08x", st.Ino, 0)
}

// fuseMount mounts path with ceph-fuse as cred, lists it and unmounts it.
func fuseMount(t *testing.T, cred ceph.Credentials, path string) error {
	t.Helper()
	dir := t.TempDir()
	keyFile, cleanup, err := ceph.WriteKeyFile(dir, cred)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	mnt := dir + "/mnt"
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ceph-fuse", mnt, "-c", harness.CephConf(), "--id", cred.UserID, "--keyfile", keyFile,
		"--client_fs=cephfs", "--client_mountpoint="+path, "--admin_socket=", "--log_file=/dev/null").CombinedOutput()
	if err != nil {
		return cliError(err, out)
	}
	defer exec.Command("umount", "-l", mnt).Run()
	_, err = os.ReadDir(mnt)
	return err
}
