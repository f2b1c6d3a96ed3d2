package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/migrate/treecheck"
)

// Ports of this test's ganesha, apart from every other test's.
const (
	migNFSPort = "12449"
	migMntPort = "12448"
)

// TestE2EMigrate moves a legacy site, an NFS PV that is not shiphold's, to a CephFS volume
// against a real API server and kube-controller-manager: bulk copy, final pass, cutover
// (refused while a pod uses the claim) and rollback, each printed as "e2e migrate <step>".
func TestE2EMigrate(t *testing.T) {
	if os.Getenv("SHIPHOLD_E2E") != "1" {
		t.Skip("the control-plane end-to-end tests run with SHIPHOLD_E2E=1 (make e2e)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{RepoRoot: root, Log: testLog{t}, SkipSnapshots: true, StartTimeout: 120 * time.Second}
	requireTools(ctx, t, root, opts)
	_, errG := exec.LookPath("ganesha.nfsd")
	harness.Require(t, "root and nfs-ganesha", os.Geteuid() == 0 && errG == nil, "run as root; apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind")
	m := &migrateE2E{t: t, ctx: ctx, root: root, state: t.TempDir()}
	m.site = m.legacyExport()
	m.bin = m.build()
	m.cfg = m.config()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	m.c = c
	m.legacyClaim()
	m.steps()
}

type migrateE2E struct {
	t     *testing.T
	ctx   context.Context
	root  string
	c     *Cluster
	bin   string
	cfg   string
	site  string // the exported directory
	state string
	want  treecheck.Manifest
}

func (m *migrateE2E) ok(step string) { fmt.Printf("e2e migrate %s: ok\n", step) }

func (m *migrateE2E) fail(step string, format string, args ...any) {
	m.t.Helper()
	fmt.Printf("e2e migrate %s: FAILED\n", step)
	m.t.Fatalf(step+": "+format, args...)
}

// legacyExport serves a site's directory with ganesha, as a legacy NFS server would.
func (m *migrateE2E) legacyExport() string {
	nfsDir, site := m.t.TempDir(), filepath.Join(m.t.TempDir(), "site")
	if err := os.Mkdir(site, 0o755); err != nil {
		m.t.Fatal(err)
	}
	spec := treecheck.Spec{SmallFiles: 500, Dirs: 10, LargeFiles: []int64{8 << 20}, SparseSize: 64 << 20, Seed: 5}
	if err := treecheck.Build(site, spec); err != nil {
		m.t.Fatal(err)
	}
	export := fmt.Sprintf("EXPORT {\n Export_Id = 77;\n Path = %q;\n Pseudo = \"/legacy/shop\";\n Protocols = 3;\n"+
		" Transports = TCP;\n SecType = sys;\n Access_Type = RW;\n Squash = No_Root_Squash;\n FSAL { Name = VFS; }\n}\n", site)
	if err := os.WriteFile(filepath.Join(nfsDir, "exports.conf"), []byte(export), 0o644); err != nil {
		m.t.Fatal(err)
	}
	nfs := func(cmd string) {
		c := exec.Command(filepath.Join(m.root, "hack/nfs-server.sh"), cmd, nfsDir)
		c.Env = append(os.Environ(), "NFS_PORT="+migNFSPort, "MNT_PORT="+migMntPort)
		if out, err := c.CombinedOutput(); err != nil {
			m.t.Fatalf("nfs-server.sh %s: %v\n%s", cmd, err, out)
		}
	}
	nfs("start")
	m.t.Cleanup(func() { nfs("stop") })
	return site
}

func (m *migrateE2E) build() string {
	bin := filepath.Join(m.t.TempDir(), "shipholdctl")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(m.root, "cmd/shipholdctl")).CombinedOutput(); err != nil {
		m.t.Fatalf("build shipholdctl: %v\n%s", err, out)
	}
	return bin
}

func (m *migrateE2E) config() string {
	return writeAdminConfig(m.t, harness.CephFSBackend(m.t, "e2e-cephfs"))
}

// writeAdminConfig writes a driver config of backends for the shipholdctl runs of a test.
func writeAdminConfig(t *testing.T, backends ...config.Backend) string {
	t.Helper()
	data, err := yaml.Marshal(&config.Config{Backends: backends})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// legacyClaim creates what a legacy site has: an NFS PV of another provisioner, bound to
// the shop/site claim, and a shiphold StorageClass for the target backend.
func (m *migrateE2E) legacyClaim() {
	objs := `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: shiphold-cephfs-e2e}
provisioner: shiphold.csi.io
parameters: {backend: e2e-cephfs}
reclaimPolicy: Delete
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: legacy-isilon-shop}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: legacy-nfs
  nfs: {server: 127.0.0.1, path: /legacy/shop}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: site
  namespace: shop
  labels: {app: shop, tier: web}
  annotations: {team: web-hosting}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: legacy-nfs
  volumeName: legacy-isilon-shop
  resources: {requests: {storage: 2Gi}}
`
	if out, err := m.apply(objs); err != nil {
		m.t.Fatalf("apply: %v\n%s", err, out)
	}
	if _, err := waitPVCBound(m.ctx, &kube{c: m.c, t: m.t}, "shop", "site", 2*time.Minute); err != nil {
		m.t.Fatal(err)
	}
}

// apply applies manifests with the control plane's kubectl.
func (m *migrateE2E) apply(manifest string) ([]byte, error) {
	return (&kube{c: m.c, t: m.t}).apply(m.ctx, manifest)
}

// migrate runs shipholdctl migrate --pvc shop/site.
func (m *migrateE2E) migrate(extra ...string) (string, error) {
	args := append([]string{"migrate", "--pvc", "shop/site", "--kubeconfig", m.c.Kubeconfig, "--to", "e2e-cephfs",
		"--config", m.cfg, "--state-dir", m.state,
		"--nfs-port", migNFSPort, "--mount-port", migMntPort, "--progress", "none"}, extra...)
	out, err := exec.CommandContext(m.ctx, m.bin, args...).CombinedOutput()
	return string(out), err
}

func (m *migrateE2E) steps() {
	var err error
	if m.want, err = treecheck.Walk(m.site); err != nil {
		m.t.Fatal(err)
	}
	if out, err := m.migrate(); err != nil {
		m.fail("copied", "%v\n%s", err, out)
	}
	m.ok("copied")
	if err := os.WriteFile(filepath.Join(m.site, "site/late-order.html"), []byte("written after the bulk pass"), 0o644); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(m.site, "odd/fifo")); err != nil {
		m.t.Fatal(err)
	}
	m.podUsingClaim()
	out, err := m.migrate("--final", "--cutover")
	if err == nil || !strings.Contains(out, "web-0") {
		m.fail("cutover", "refused while pod web-0 uses the claim? err=%v\n%s", err, out)
	}
	if _, err := m.c.Kubectl(m.ctx, "delete", "pod", "-n", "shop", "web-0", "--wait=true"); err != nil {
		m.t.Fatal(err)
	}
	if out, err = m.migrate("--final", "--cutover"); err != nil {
		m.fail("final", "%v\n%s", err, out)
	}
	m.ok("final")
	m.checkCutover(out)
	m.ok("cutover")
	rb, err := exec.CommandContext(m.ctx, m.bin, "migrate", "rollback", "--pvc", "shop/site", "--kubeconfig", m.c.Kubeconfig).CombinedOutput()
	if err != nil {
		m.fail("rollback", "%v\n%s", err, rb)
	}
	m.checkRollback()
	m.ok("rollback")
}

func (m *migrateE2E) podUsingClaim() {
	pod := `
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
spec:
  containers: [{name: web, image: registry.invalid/web:1}]
  volumes: [{name: site, persistentVolumeClaim: {claimName: site}}]
`
	if out, err := m.apply(pod); err != nil {
		m.t.Fatalf("apply pod: %v\n%s", err, out)
	}
}

type claimView struct {
	Metadata struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		VolumeName string `json:"volumeName"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

type pvView struct {
	Spec struct {
		Policy string `json:"persistentVolumeReclaimPolicy"`
		CSI    *struct {
			Driver string `json:"driver"`
			Handle string `json:"volumeHandle"`
		} `json:"csi"`
	} `json:"spec"`
}

func (m *migrateE2E) get(into any, args ...string) {
	m.t.Helper()
	out, err := m.c.Kubectl(m.ctx, append([]string{"get", "-o", "json"}, args...)...)
	if err != nil {
		m.t.Fatalf("kubectl get %v: %v", args, err)
	}
	if err := json.Unmarshal(out, into); err != nil {
		m.t.Fatal(err)
	}
}

// checkCutover: the claim, with its labels and annotations, is bound to a shiphold PV whose
// volume holds the site's final state; the legacy PV is retained.
func (m *migrateE2E) checkCutover(out string) {
	var pvc claimView
	m.get(&pvc, "pvc", "-n", "shop", "site")
	var pv, old pvView
	m.get(&pv, "pv", pvc.Spec.VolumeName)
	m.get(&old, "pv", "legacy-isilon-shop")
	if pvc.Status.Phase != "Bound" || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != "shiphold.csi.io" ||
		pvc.Metadata.Labels["tier"] != "web" || pvc.Metadata.Annotations["team"] != "web-hosting" {
		m.fail("cutover", "claim %+v on %+v\n%s", pvc, pv.Spec, out)
	}
	if old.Spec.Policy != "Retain" {
		m.fail("cutover", "legacy PV has reclaim policy %s, want Retain", old.Spec.Policy)
	}
	if !strings.Contains(out, pv.Spec.CSI.Handle) {
		m.fail("cutover", "output does not name the new volume %s:\n%s", pv.Spec.CSI.Handle, out)
	}
	m.t.Logf("cutover: shop/site on %s (%s)", pvc.Spec.VolumeName, pv.Spec.CSI.Handle)
	if d := m.targetDiff(pv.Spec.CSI.Handle); len(d) > 0 {
		m.fail("cutover", "the new volume differs from the site in %d ways:\n%s", len(d), strings.Join(d[:min(len(d), 30)], "\n"))
	}
}

// targetDiff stages the new volume with the node plugin's code and compares it with the
// site's final state by treecheck's own walker (NFSv3 carries no xattrs, and reading over
// it moved the atimes).
func (m *migrateE2E) targetDiff(handle string) []string {
	want, err := treecheck.Walk(m.site)
	if err != nil {
		m.t.Fatal(err)
	}
	cfg, err := config.Load(m.cfg, registry.Sections())
	if err != nil {
		m.t.Fatal(err)
	}
	b, err := registry.Open(cfg, true, true)
	if err != nil {
		m.t.Fatal(err)
	}
	defer b.Close()
	id, err := volid.ParseVolume(handle)
	if err != nil {
		m.t.Fatal(err)
	}
	v, err := b.Controllers[id.Backend].GetVolume(m.ctx, id, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { m.deleteVolume(handle) }) // a rollback keeps it, for the admin to delete
	st, staging := b.Stagers[id.Backend], filepath.Join(m.t.TempDir(), "staging")
	if err := st.StageVolume(m.ctx, &backend.StageRequest{ID: id, StagingPath: staging, Context: v.Context}); err != nil {
		m.t.Fatal(err)
	}
	defer st.UnstageVolume(context.Background(), id, staging)
	dir, _, err := st.PublishSource(m.ctx, id, staging)
	if err != nil {
		m.t.Fatal(err)
	}
	got, err := treecheck.Walk(dir)
	if err != nil {
		m.t.Fatal(err)
	}
	return treecheck.Diff(want, got, treecheck.Compare{NoXattrs: true, NoAtimes: true})
}

func (m *migrateE2E) deleteVolume(handle string) {
	cfg, err := config.Load(m.cfg, registry.Sections())
	if err != nil {
		m.t.Error(err)
		return
	}
	b, err := registry.Open(cfg, true, false)
	if err != nil {
		m.t.Error(err)
		return
	}
	defer b.Close()
	id, _ := volid.ParseVolume(handle)
	if err := b.Controllers[id.Backend].DeleteVolume(context.Background(), id, nil); err != nil {
		m.t.Errorf("delete the migrated volume %s: %v", handle, err)
	}
}

func (m *migrateE2E) checkRollback() {
	var pvc claimView
	m.get(&pvc, "pvc", "-n", "shop", "site")
	var old pvView
	m.get(&old, "pv", "legacy-isilon-shop")
	if pvc.Status.Phase != "Bound" || pvc.Spec.VolumeName != "legacy-isilon-shop" || pvc.Metadata.Labels["app"] != "shop" {
		m.fail("rollback", "claim %+v", pvc)
	}
	if old.Spec.Policy != "Delete" {
		m.fail("rollback", "legacy PV has reclaim policy %s, want Delete again", old.Spec.Policy)
	}
}
