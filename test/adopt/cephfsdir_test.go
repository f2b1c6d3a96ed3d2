package adopttest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ceph/go-ceph/cephfs"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

// legacyClient is a CephFS client of the whole filesystem through libcephfs, as the legacy
// site's own clients and an admin see it.
func legacyClient(t *testing.T) *cephfs.MountInfo {
	t.Helper()
	m, err := cephfs.CreateMount()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ReadConfigFile(harness.CephConf()); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmount(); m.Release() })
	return m
}

func putFile(t *testing.T, m *cephfs.MountInfo, path, content string) {
	t.Helper()
	f, err := m.Open(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	if _, err := f.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
}

func getFile(t *testing.T, m *cephfs.MountInfo, path string) string {
	t.Helper()
	f, err := m.Open(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	n, err := f.Read(buf)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(buf[:n])
}

// removeTree removes a directory and what it holds through libcephfs.
func removeTree(m *cephfs.MountInfo, path string) {
	d, err := m.OpenDir(path)
	if err != nil {
		return
	}
	for {
		e, err := d.ReadDir()
		if err != nil || e == nil {
			break
		}
		switch n := e.Name(); {
		case n == "." || n == "..":
		case e.DType() == cephfs.DTypeDir:
			removeTree(m, path+"/"+n)
		default:
			m.Unlink(path + "/" + n)
		}
	}
	d.Close()
	m.RemoveDir(path)
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) { harness.Main(m) }

// shipholdctl runs the CLI, built once, with cfg as its config: stdout, stderr, exit code.
func shipholdctl(t *testing.T, cfg *config.Config, args ...string) (string, string, int) {
	t.Helper()
	ctlBin := harness.Binary(t, "shipholdctl")
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(ctlBin, append(args, "--config", cfgPath)...)
	cmd.Env = append(os.Environ(), "CEPH_CONF="+harness.CephConf())
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("shipholdctl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// pvOf reads the adopted volume back from the PV shipholdctl import printed: its handle
// and volume attributes are all a node gets.
func pvOf(t *testing.T, manifests string) *backend.Volume {
	t.Helper()
	doc, _, _ := strings.Cut(manifests, "\n---\n")
	var pv corev1.PersistentVolume
	if err := yaml.Unmarshal([]byte(doc), &pv); err != nil || pv.Spec.CSI == nil {
		t.Fatalf("no CSI PV in the import's output (%v):\n%s", err, manifests)
	}
	id, err := volid.ParseVolume(pv.Spec.CSI.VolumeHandle)
	if err != nil {
		t.Fatalf("PV handle %q: %v", pv.Spec.CSI.VolumeHandle, err)
	}
	q := pv.Spec.Capacity[corev1.ResourceStorage]
	return &backend.Volume{ID: id, Context: pv.Spec.CSI.VolumeAttributes, CapacityBytes: q.Value(), RequestName: pv.Name}
}

// TestAdoptCephFSDirectory: a legacy site's plain directory (not a subvolume) holding files
// is adopted with shipholdctl import FS:/PATH; the PV it prints stages and publishes on the
// plugin (the directory is the mount's root), the files read back, the quota set on the
// directory bounds writes, it is listed, counted against its tenant's quota and spared by gc
// while its PV exists, it grows; a snapshot is refused (FAILED_PRECONDITION); its delete
// releases it and every file stays where it was. A missing path and a path inside the
// mgr's /volumes are refused with messages saying so (issue 12).
func TestAdoptCephFSDirectory(t *testing.T) {
	harness.RequireRoot(t, "mounting CephFS")
	harness.RequireCommand(t, "ceph-fuse", "apt-get install ceph-fuse, or hack/install-deps.sh")
	be := harness.CephFSBackend(t, "fs1")
	cfg := &config.Config{Backends: []config.Backend{be}}
	shop := "shop-" + suffix()
	withQuota(cfg, shop)
	m := legacyClient(t)
	root := "/legacy-" + suffix()
	site := root + "/site1"
	t.Cleanup(func() { removeTree(m, root) })
	if err := m.MakeDirs(site+"/htdocs", 0o755); err != nil {
		t.Fatal(err)
	}
	putFile(t, m, site+"/index.html", "legacy site")
	putFile(t, m, site+"/htdocs/page.html", "a page")

	_, stderr, code := shipholdctl(t, cfg, "import", "--backend", "fs1", "--tenant", shop, "--size", "32Mi", "cephfs:"+root+"/missing")
	if code != 1 || !strings.Contains(stderr, "no directory") {
		t.Fatalf("import of a missing path: exit %d, %s; want exit 1 saying there is no directory", code, stderr)
	}
	_, stderr, code = shipholdctl(t, cfg, "import", "--backend", "fs1", "--tenant", shop, "--size", "32Mi", "cephfs:"+site+"/index.html")
	if code != 1 || !strings.Contains(stderr, "not a directory") {
		t.Fatalf("import of a file: exit %d, %s; want exit 1 saying it is not a directory", code, stderr)
	}
	_, stderr, code = shipholdctl(t, cfg, "import", "--backend", "fs1", "--tenant", shop, "--size", "32Mi", "cephfs:/volumes")
	if code != 1 || !strings.Contains(stderr, "subvolume") {
		t.Fatalf("import of /volumes: exit %d, %s; want exit 1 pointing at subvolume adoption", code, stderr)
	}
	stdout, stderr, code := shipholdctl(t, cfg, "import", "--backend", "fs1", "--tenant", shop, "--size", "32Mi", "--name", "pv-site1", "cephfs:"+site)
	if code != 0 {
		t.Fatalf("shipholdctl import cephfs:%s: exit %d\n%s", site, code, stderr)
	}
	v := pvOf(t, stdout)
	if v.ID.Object != site || v.ID.Tenant != shop || v.Context["rootPath"] != site || v.CapacityBytes != 32<<20 {
		t.Fatalf("adopted %s (context %v, %d bytes), want %s kept by path with 32 MiB", v.ID, v.Context, v.CapacityBytes, site)
	}
	if q, err := m.GetXattr(site, "ceph.quota.max_bytes"); err != nil || string(q) != "33554432" {
		t.Fatalf("ceph.quota.max_bytes of %s: %q %v, want 33554432", site, q, err)
	}
	// Again: the same volume, nothing changes.
	again, stderr, code := shipholdctl(t, cfg, "import", "--backend", "fs1", "--tenant", shop, "--size", "32Mi", "--name", "pv-site1", "cephfs:"+site)
	if code != 0 || pvOf(t, again).ID != v.ID {
		t.Fatalf("second import: exit %d\n%s%s", code, again, stderr)
	}
	if _, stderr, code := shipholdctl(t, cfg, "import", "--backend", "fs1", "--tenant", "other-"+suffix(), "--size", "32Mi", "--name", "pv-site1", "cephfs:"+site); code != 1 || !strings.Contains(stderr, "already managed") {
		t.Fatalf("import for another tenant: exit %d, %s; want exit 1, already managed", code, stderr)
	}

	d := harness.StartDriver(t, cfg, driver.ModeAll)
	counted(t, cfg, d, v, 32<<20)
	a := attach(t, d, v, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, ""))
	a.readBack(t, "index.html", "legacy site")
	if b, err := os.ReadFile(filepath.Join(a.target, "htdocs", "page.html")); err != nil || string(b) != "a page" {
		t.Fatalf("htdocs/page.html through the mount: %q %v", b, err)
	}
	if err := writeMiB(filepath.Join(a.target, "big"), 48); !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("writing 48 MiB into the 32 MiB adopted directory: %v, want EDQUOT", err)
	}
	os.Remove(filepath.Join(a.target, "big"))
	if got := a.expand(t, 64<<20); got != 64<<20 {
		t.Fatalf("expanded to %d bytes, want 64 MiB", got)
	}
	if q, err := m.GetXattr(site, "ceph.quota.max_bytes"); err != nil || string(q) != "67108864" {
		t.Fatalf("ceph.quota.max_bytes after expansion: %q %v, want 67108864", q, err)
	}
	counted(t, cfg, d, v, 64<<20)
	_, err := d.Controller().CreateSnapshot(ctxT(t), &csi.CreateSnapshotRequest{SourceVolumeId: v.ID.String(), Name: "snap-" + suffix()})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), ".snap") {
		t.Fatalf("CreateSnapshot of an adopted directory: %v, want FAILED_PRECONDITION saying how to snapshot it", err)
	}
	a.detach(t)

	if _, err := d.Controller().DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: v.ID.String()}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	unlisted(t, d, v.ID.String())
	for path, want := range map[string]string{site + "/index.html": "legacy site", site + "/htdocs/page.html": "a page", site + "/after-adoption": "new"} {
		if got := getFile(t, m, path); got != want {
			t.Fatalf("%s after DeleteVolume: %q, want %q", path, got, want)
		}
	}
	for _, x := range []string{"ceph.quota.max_bytes", "user.shiphold.request"} {
		if got, err := m.GetXattr(site, x); err == nil && string(got) != "0" {
			t.Fatalf("%s of the released directory: %q, want none (it had none before)", x, got)
		}
	}
	if _, err := d.Controller().DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: v.ID.String()}); err != nil {
		t.Fatalf("second DeleteVolume: %v", err)
	}

	// A directory with a quota of its own is adopted at that size, and gets it back.
	site2 := root + "/site2"
	if err := m.MakeDir(site2, 0o755); err != nil {
		t.Fatal(err)
	}
	putFile(t, m, site2+"/data", "site two")
	if err := m.SetXattr(site2, "ceph.quota.max_bytes", []byte("16777216"), cephfs.XattrDefault); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = shipholdctl(t, cfg, "import", "--backend", "fs1", "--tenant", shop, "cephfs:"+site2)
	if code != 0 {
		t.Fatalf("import of %s without --size: exit %d\n%s", site2, code, stderr)
	}
	if v2 := pvOf(t, stdout); v2.CapacityBytes != 16<<20 {
		t.Fatalf("%s adopted with %d bytes, want its own 16 MiB quota", site2, v2.CapacityBytes)
	} else if _, err := d.Controller().DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: v2.ID.String()}); err != nil {
		t.Fatalf("DeleteVolume %s: %v", v2.ID, err)
	}
	if q, err := m.GetXattr(site2, "ceph.quota.max_bytes"); err != nil || string(q) != "16777216" || getFile(t, m, site2+"/data") != "site two" {
		t.Fatalf("%s after its release: quota %q %v, want its 16 MiB back and its data", site2, q, err)
	}
}

// writeMiB writes n MiB of zeroes to path, syncing, and returns the first error.
func writeMiB(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < n; i++ {
		if _, err = f.Write(chunk); err != nil {
			break
		}
		if err = f.Sync(); err != nil {
			break
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
