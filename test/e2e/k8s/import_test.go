package k8s

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/test/harness"
)

// TestE2EImport adopts a legacy Isilon site in place against a real API server and
// kube-controller-manager: shipholdctl import --from-pvs lists its NFS PV, --apply is
// refused while a pod uses the claim, then adopts the directory (OneFS simulator) and
// re-binds the claim to a shiphold PV; a rerun finds it done. Each step prints
// "e2e import <step>: ok".
func TestE2EImport(t *testing.T) {
	if os.Getenv("SHIPHOLD_E2E") != "1" {
		t.Skip("the control-plane end-to-end tests run with SHIPHOLD_E2E=1 (make e2e)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{RepoRoot: root, Log: testLog{t}, SkipSnapshots: true, StartTimeout: 120 * time.Second}
	requireTools(ctx, t, root, opts)
	im := &importE2E{t: t, ctx: ctx, sim: harness.StartOneFS(t)}
	im.legacySite()
	im.bin = ctlBinary(t, root)
	im.cfg = im.config()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	im.k = &kube{c: c, t: t}
	im.legacyClaim()
	im.steps()
}

// ctlBinary is bin/shipholdctl of make build (hack/e2e.sh runs it first), as driverBinary
// does for the plugin, else (or with SHIPHOLD_E2E_REBUILD=1) a fresh build.
func ctlBinary(t *testing.T, root string) string {
	bin := filepath.Join(root, "bin", "shipholdctl")
	if _, err := os.Stat(bin); err == nil && os.Getenv("SHIPHOLD_E2E_REBUILD") != "1" {
		return bin
	}
	return (&migrateE2E{t: t, root: root}).build()
}

type importE2E struct {
	t        *testing.T
	ctx      context.Context
	sim      *harness.OneFS
	k        *kube
	bin, cfg string
}

const importSite = "/ifs/legacy/shop"

func (im *importE2E) ok(step string) { fmt.Printf("e2e import %s: ok\n", step) }

func (im *importE2E) fail(step string, format string, args ...any) {
	im.t.Helper()
	fmt.Printf("e2e import %s: FAILED\n", step)
	im.t.Fatalf(step+": "+format, args...)
}

// legacySite is a hand-made site on the array: a directory with data, a hard quota and an
// export a legacy node mounts.
func (im *importE2E) legacySite() {
	dir := filepath.Join(im.sim.Root, strings.TrimPrefix(importSite, "/ifs/"))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		im.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("shop"), 0o644); err != nil {
		im.t.Fatal(err)
	}
	im.papi("/platform/1/quota/quotas", `{"path":"`+importSite+`","type":"directory","enforced":true,"thresholds":{"hard":2147483648}}`)
	im.papi("/platform/2/protocols/nfs/exports?zone=System", `{"paths":["`+importSite+`"],"read_write_clients":["10.9.9.9"]}`)
}

func (im *importE2E) papi(path, body string) {
	req, _ := http.NewRequest(http.MethodPost, im.sim.URL+path, strings.NewReader(body))
	req.SetBasicAuth("admin", "onefs-test-password")
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		im.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		im.t.Fatalf("POST %s: %s %s", path, resp.Status, b.String())
	}
}

func (im *importE2E) config() string {
	return writeAdminConfig(im.t, im.sim.Backend(im.t, "e2e-isilon"))
}

// legacyClaim is the site as the cluster has it: an NFS PV (Retain) bound to shop/site,
// a pod using the claim (never scheduled: no node), and a shiphold class for the backend.
func (im *importE2E) legacyClaim() {
	objs := `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: shiphold-isilon-e2e}
provisioner: shiphold.csi.io
parameters: {backend: e2e-isilon}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: legacy-isilon-shop}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: legacy-nfs
  nfs: {server: 127.0.0.1, path: ` + importSite + `}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: site, namespace: shop, labels: {app: shop}}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: legacy-nfs
  volumeName: legacy-isilon-shop
  resources: {requests: {storage: 2Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  containers: [{name: web, image: registry.invalid/web, volumeMounts: [{name: d, mountPath: /srv}]}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: site}}]
`
	if out, err := im.k.apply(im.ctx, objs); err != nil {
		im.t.Fatalf("apply: %v\n%s", err, out)
	}
	if _, err := waitPVCBound(im.ctx, im.k, "shop", "site", 2*time.Minute); err != nil {
		im.t.Fatal(err)
	}
}

// shipholdctl runs shipholdctl import --from-pvs against the cluster; it returns the exit code.
func (im *importE2E) shipholdctl(extra ...string) (string, int) {
	args := append([]string{"import", "--from-pvs", "--backend", "e2e-isilon", "--kubeconfig", im.k.c.Kubeconfig, "--config", im.cfg}, extra...)
	out, err := exec.CommandContext(im.ctx, im.bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		im.t.Fatal(err)
	}
	return string(out), 0
}

func (im *importE2E) get(jsonpath string, args ...string) string {
	out, err := im.k.run(im.ctx, append(append([]string{"get"}, args...), "-o", "jsonpath="+jsonpath)...)
	if err != nil {
		im.t.Fatalf("kubectl get %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (im *importE2E) steps() {
	out, code := im.shipholdctl()
	if code != 0 || !strings.Contains(out, "legacy-isilon-shop  shop/site  "+importSite) || !strings.Contains(out, "refused: claim shop/site is in use by pod web") {
		im.fail("dry-run", "exit %d:\n%s", code, out)
	}
	im.ok("dry-run")
	out, code = im.shipholdctl("--apply")
	if code != 3 || im.get("{.spec.volumeName}", "pvc", "-n", "shop", "site") != "legacy-isilon-shop" || len(im.sim.Server.Exports()[0].ReadOnlyClients) != 0 {
		im.fail("refused-in-use", "exit %d, want 3 and nothing changed:\n%s", code, out)
	}
	im.ok("refused-in-use")
	if out, err := im.k.run(im.ctx, "delete", "pod", "-n", "shop", "web", "--wait"); err != nil {
		im.t.Fatalf("delete pod: %v\n%s", err, out)
	}
	out, code = im.shipholdctl("--apply")
	if code != 0 || !strings.Contains(out, "adopted PV legacy-isilon-shop: claim shop/site is on PV shiphold-") {
		im.fail("apply", "exit %d:\n%s", code, out)
	}
	pv, err := waitPVCBound(im.ctx, im.k, "shop", "site", 2*time.Minute)
	if err != nil || !strings.HasPrefix(pv, "shiphold-") {
		im.fail("apply", "claim bound to %q: %v", pv, err)
	}
	im.ok("apply")
	handle := im.get("{.spec.csi.volumeHandle} {.spec.persistentVolumeReclaimPolicy} {.spec.capacity.storage}", "pv", pv)
	if handle != "a1:e2e-isilon:shop::"+importSite+" Retain 2Gi" || im.get("{.spec.persistentVolumeReclaimPolicy}", "pv", "legacy-isilon-shop") != "Retain" ||
		im.get("{.metadata.labels.app}", "pvc", "-n", "shop", "site") != "shop" {
		im.fail("rebound", "new PV %s: %q", pv, handle)
	}
	im.ok("rebound")
	e := im.sim.Server.Exports()
	data, err := os.ReadFile(filepath.Join(im.sim.Root, strings.TrimPrefix(importSite, "/ifs/"), "index.html"))
	if len(e) != 1 || !slices.Contains(e[0].ReadWriteClients, "10.9.9.9") || !slices.Contains(e[0].ReadOnlyClients, isilon.NoAccessClient) || string(data) != "shop" || err != nil {
		im.fail("storage", "exports %+v, data %q %v", e, data, err)
	}
	im.ok("storage")
	out, code = im.shipholdctl("--apply")
	if code != 0 || !strings.Contains(out, "adopted already: claim on "+pv) {
		im.fail("rerun", "exit %d:\n%s", code, out)
	}
	im.ok("rerun")
}
