package k8s

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// The control-plane end-to-end test: the real shiphold-csi binary behind the real
// csi-provisioner, csi-attacher, csi-resizer and csi-snapshotter, with the StorageClasses and
// VolumeSnapshotClasses of deploy/kubernetes applied unchanged, against the local Ceph (RBD,
// CephFS) and the OneFS simulator. It prints one line per backend and step:
//
//	e2e <backend> <step>: ok
//	e2e <backend> <step>: FAIL <reason>
//
// and "e2e metrics: ok|FAIL ...". It runs only with SHIPHOLD_E2E=1 (hack/e2e.sh, make e2e), so
// the plain `go test ./test/...` of make test does not run it a second time.

const (
	e2eDriverName = "shiphold.csi.io"
	e2eNodeName   = "node-1"
	e2eNodeAddr   = "127.0.0.1"
	e2eSize       = "1Gi"
	e2eBigSize    = "2Gi"
	gib           = int64(1) << 30
)

var e2eTenants = []string{"tenant-a", "tenant-b"}

// e2eBackend is one backend under test and how to look at it from the storage side.
type e2eBackend struct {
	label   string // rbd, cephfs, isilon: the storageclass-<label>.yaml file and the output lines
	name    string // the backend name the classes pass (parameters.backend)
	kind    string // config kind
	sc, vsc string // class names from deploy/kubernetes
	access  string // PVC access mode
	node    string // the node whose grant attachment reads; "" is node-1
	// volume reports the size of volume <hash> in tenant's place on the backend, or an error
	// when it is not there.
	volume func(ctx context.Context, tenant, hash string) (int64, error)
	// attachment reads the storage's record of node-1's access to volume <hash>: "rw", "ro",
	// or "" when the storage holds none (RBD and CephFS publish records, Isilon export clients).
	attachment func(ctx context.Context, tenant, hash string) (string, error)
	// snapshot checks that the storage holds snapshot <snapHash> taken of volume <hash>.
	snapshot func(ctx context.Context, tenant, hash, snapHash string) error
	// leftovers lists what remains of the test's tenants on the backend.
	leftovers func(ctx context.Context) ([]string, error)
	// purge removes what remains, best-effort.
	purge func(ctx context.Context)
}

// e2eVol is what the test created for one backend in one tenant namespace.
type e2eVol struct {
	ns                   string
	pvc, pv, hash        string
	va                   string
	data                 string // written through the node plugin before the snapshot
	snap, content        string
	restored, restoredPV string
	restoredHash         string
	restoredVA           string
}

func TestE2EControlPlane(t *testing.T) {
	ctx, root, work, outDir := e2eWorkspace(t, "control-plane", 50*time.Minute)
	sock := filepath.Join(work, "csi.sock")
	opts := Options{RepoRoot: root, CSIAddress: sock, Log: testLog{t}, StartTimeout: 120 * time.Second}
	requireTools(ctx, t, root, opts)

	st := setupBackends(ctx, t, root, work, true)
	classes, cfg, backends, cfgPath, ceph, cephKey, sim := st.classes, st.cfg, st.backends, st.cfgPath, st.ceph, st.cephKey, st.sim

	// --- the real driver binary
	bin, err := driverBinary(ctx, t, root, work)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
	driverLog := filepath.Join(outDir, "e2e-driver.log")
	// No NFS client in this kernel: the node plugin mounts the simulator's exports through
	// the test-only stand-in, which still refuses a node the export does not list.
	drv, err := startDriverProcess(bin, driverLog, []string{isilon.StandInEnv + "=" + sim.Root},
		"--endpoint=unix://"+sock, "--nodeid="+e2eNodeName, "--node-address="+e2eNodeAddr, "--node-labels="+e2eNodeLabels,
		"--mode=all", "--config="+cfgPath, "--drivername="+e2eDriverName,
		fmt.Sprintf("--metrics-address=127.0.0.1:%d", ports[0]),
		"--kubelet-dir="+filepath.Join(work, "kubelet"), "--v=4")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drv.stop(10 * time.Second); err != nil {
			t.Errorf("driver: %v", err)
		}
	})
	nodeID, err := waitDriver(ctx, drv, sock, metricsURL)
	if err != nil {
		t.Fatalf("driver did not come up: %v\n%s", err, tail(driverLog, 30))
	}
	t.Logf("driver %s up, NodeGetInfo node ID %q, log %s", bin, nodeID, driverLog)
	nodeConn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeConn.Close() })

	// --- the control plane, sidecars on the driver's socket
	start := time.Now()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		saveLogs(t, c, filepath.Join(outDir, "e2e-k8s-logs"))
		if err := c.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	t.Logf("control plane up in %s", time.Since(start).Round(time.Millisecond))
	k := &kube{c: c, t: t}
	node := &nodePlugin{node: csi.NewNodeClient(nodeConn), kubelet: filepath.Join(work, "kubelet"), k: k}

	// --- what users apply: namespace, CSIDriver, the classes unchanged, and the secrets
	for _, f := range []string{"namespace.yaml", "csidriver.yaml", "storageclass-rbd.yaml", "storageclass-cephfs.yaml",
		"storageclass-isilon.yaml", "volumesnapshotclass.yaml"} {
		if _, err := k.run(ctx, "apply", "--validate=strict", "-f", filepath.Join(root, "deploy", "kubernetes", f)); err != nil {
			t.Fatal(err)
		}
	}
	isiUser, isiPass, err := credentialsFile(cfg.Backends[2].Section.(*isilon.Config).CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string]string{
		"rbd":    {"userID": ceph.Credentials.UserID, "userKey": cephKey},
		"cephfs": {"userID": ceph.Credentials.UserID, "userKey": cephKey},
		"isilon": {"username": isiUser, "password": isiPass},
	}
	if err := applySecrets(ctx, k, classes, secrets); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		// reclaimPolicy and deletionPolicy from the classes: "deleted" expects Delete.
		out, err := k.run(ctx, "get", "storageclass", b.sc, "-o", "jsonpath={.reclaimPolicy} {.allowVolumeExpansion} {.parameters.backend}")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(out), "Delete true "+b.name; got != want {
			t.Fatalf("StorageClass %s: %q, want %q (the test expects reclaimPolicy Delete and expansion)", b.sc, got, want)
		}
		out, err = k.run(ctx, "get", "volumesnapshotclass", b.vsc, "-o", "jsonpath={.deletionPolicy}")
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "Delete" {
			t.Fatalf("VolumeSnapshotClass %s: deletionPolicy %q, want Delete", b.vsc, out)
		}
	}

	// --- the node, as the kubelet would register it
	if nodeID != e2eNodeName+"@"+e2eNodeAddr {
		t.Errorf("NodeGetInfo node ID %q, want %s@%s", nodeID, e2eNodeName, e2eNodeAddr)
	}
	topoLabels, topoKeys, err := nodeTopology(ctx, nodeConn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.apply(ctx, fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %[1]s
  labels: {kubernetes.io/hostname: %[1]s, kubernetes.io/os: linux%[4]s}
---
apiVersion: storage.k8s.io/v1
kind: CSINode
metadata: {name: %[1]s}
spec:
  drivers:
  - name: %[2]s
    nodeID: %[3]q
    topologyKeys: [%[5]s]
`, e2eNodeName, e2eDriverName, nodeID, topoLabels, topoKeys)); err != nil {
		t.Fatal(err)
	}
	for _, ns := range e2eTenants {
		if _, err := k.run(ctx, "create", "namespace", ns); err != nil {
			t.Fatal(err)
		}
	}

	// --- every backend, every step
	var results []string
	failed := false
	report := func(b *e2eBackend, step string, err error) bool {
		line := fmt.Sprintf("e2e %s %s: ok", b.label, step)
		if err != nil {
			line = fmt.Sprintf("e2e %s %s: FAIL %s", b.label, step, oneLine(err.Error()))
			failed = true
		}
		fmt.Println(line)
		results = append(results, line)
		return err == nil
	}
	for _, b := range backends {
		runBackend(ctx, k, node, b, report)
		if b.label == "isilon" {
			report(b, "topology", stepTopology(ctx, k, b))
		}
	}

	// --- metrics
	merr := checkMetrics(ctx, metricsURL, filepath.Join(outDir, "e2e-metrics.txt"), backends)
	line := "e2e metrics: ok"
	if merr != nil {
		line = "e2e metrics: FAIL " + oneLine(merr.Error())
		failed = true
	}
	fmt.Println(line)
	results = append(results, line)
	_ = os.WriteFile(filepath.Join(outDir, "e2e-summary.txt"), []byte(strings.Join(results, "\n")+"\n"), 0o644)

	if !drv.running() {
		t.Errorf("the driver exited during the test:\n%s", tail(driverLog, 30))
	}
	if failed {
		t.Errorf("end-to-end steps failed (driver log %s, component logs %s):\n%s", driverLog,
			filepath.Join(outDir, "e2e-k8s-logs"), strings.Join(results, "\n"))
	}
}

// e2eStack is what both end-to-end tests run against: the backends as the example classes
// name them, the driver's config file, and the credentials their secrets carry.
type e2eStack struct {
	classes  map[string]*exampleClass
	cfg      config.Config
	backends []*e2eBackend
	cfgPath  string
	ceph     ceph.Cluster
	cephKey  string
	sim      *harness.OneFS
}

// setupBackends finds the local Ceph and starts the OneFS simulator, writes the driver's
// config to work/config.yaml, and removes the test's leftovers on the backends now and at
// the end of the test.
// setupBackends configures the backends of the example classes; with topology, Isilon is
// reached only from the nodes labelled e2eBareMetal (the pods' node carries no such label).
// e2eWorkspace is what both end-to-end tests start from: the SHIPHOLD_E2E gate, a context
// bounding the whole run, the repository root, a work directory removed at the end, and
// _output for the logs and summaries.
func e2eWorkspace(t *testing.T, what string, timeout time.Duration) (ctx context.Context, root, work, outDir string) {
	t.Helper()
	if os.Getenv("SHIPHOLD_E2E") != "1" {
		t.Skipf("the %s end-to-end test runs with SHIPHOLD_E2E=1 (make e2e)", what)
	}
	if testing.Short() {
		t.Skip("not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	work, err = os.MkdirTemp("", "shiphold-e2e-"+what+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	outDir = filepath.Join(root, "_output")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return ctx, root, work, outDir
}

func setupBackends(ctx context.Context, t *testing.T, root, work string, topology bool) *e2eStack {
	// --- the backends, named as the example classes name them
	classes, err := readExampleClasses(filepath.Join(root, "deploy", "kubernetes"))
	if err != nil {
		t.Fatal(err)
	}
	cephConf := filepath.Join(harness.CephDir(), "ceph.conf")
	ceph := harness.LocalCeph(t)
	cephKey, err := keyringKey(ceph.Credentials.KeyringFile)
	harness.Require(t, "local Ceph admin key", err == nil, fmt.Sprint(err))
	// The node steps stage volumes as the kubelet would: FUSE clients, loop devices, mounts.
	harness.RequireRoot(t, "staging volumes through the node plugin")
	harness.RequireCommand(t, "ceph-fuse", "apt-get install ceph-fuse, or hack/install-deps.sh")
	harness.RequireCommand(t, "rbd-fuse", "apt-get install rbd-fuse, or hack/install-deps.sh")
	sim := harness.StartOneFS(t)

	var cfg config.Config
	var backends []*e2eBackend
	for _, label := range []string{"rbd", "cephfs", "isilon"} {
		cl, ok := classes[label]
		if !ok {
			t.Fatalf("deploy/kubernetes has no storageclass-%s.yaml", label)
		}
		var be config.Backend
		b := &e2eBackend{label: label, name: cl.backend, sc: cl.sc, vsc: cl.vsc}
		switch label {
		case "rbd":
			be = harness.RBDBackend(t, cl.backend)
			b.access = "ReadWriteOnce"
			rbdChecks(b, cephConf, be.Section.(*rbd.Config).Pool)
		case "cephfs":
			be = harness.CephFSBackend(t, cl.backend)
			b.access = "ReadWriteMany"
			cephfsChecks(b, cephConf, be.Section.(*cephfs.Config).FSName, be.Section.(*cephfs.Config).SubvolumeGroupPrefix)
		case "isilon":
			be = sim.Backend(t, cl.backend)
			if topology {
				be.Topology = &config.Topology{NodeSelector: e2eBareMetal}
			}
			b.access = "ReadWriteMany"
			if err := isilonChecks(b, sim, be.Section.(*isilon.Config)); err != nil {
				t.Fatal(err)
			}
		}
		b.kind = be.Kind
		cfg.Backends = append(cfg.Backends, be)
		backends = append(backends, b)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfgYAML, err := yaml.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(work, "config.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}

	// Leftovers of an earlier, interrupted run would fail "deleted"; remove them first, and
	// again at the end (after the driver is gone: cleanups run last-in first-out).
	for _, b := range backends {
		b.purge(ctx)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer ccancel()
		for _, b := range backends {
			b.purge(cctx)
		}
	})

	return &e2eStack{classes: classes, cfg: cfg, backends: backends, cfgPath: cfgPath, ceph: ceph, cephKey: cephKey, sim: sim}
}

// runBackend walks one backend through the steps in both tenant namespaces. A failed step
// fails the ones that need it; "deleted" always runs and cleans up what exists.
func runBackend(ctx context.Context, k *kube, n *nodePlugin, b *e2eBackend, report func(*e2eBackend, string, error) bool) {
	vols := make([]*e2eVol, len(e2eTenants))
	for i, ns := range e2eTenants {
		vols[i] = &e2eVol{ns: ns, pvc: "data-" + b.label, snap: "snap-" + b.label, restored: "restored-" + b.label}
	}
	var blocked string
	step := func(name string, f func() error) {
		if blocked != "" {
			report(b, name, fmt.Errorf("not run: %s failed", blocked))
			return
		}
		start := time.Now()
		err := f()
		k.t.Logf("%s %s took %s", b.label, name, time.Since(start).Round(time.Millisecond))
		if !report(b, name, err) {
			blocked = name
		}
	}

	step("bound", func() error { return stepBound(ctx, k, b, vols) })
	step("attached", func() error { return stepAttached(ctx, k, b, vols) })
	step("expanded", func() error { return stepExpanded(ctx, k, b, vols) })
	step("written", func() error { return stepWritten(ctx, n, vols) })
	step("snapshot", func() error { return stepSnapshot(ctx, k, b, vols) })
	step("restored", func() error { return stepRestored(ctx, k, n, b, vols) })
	blocked = ""
	step("deleted", func() error { return stepDeleted(ctx, k, b, vols) })
}

func stepBound(ctx context.Context, k *kube, b *e2eBackend, vols []*e2eVol) error {
	for _, v := range vols {
		if _, err := k.apply(ctx, pvcYAML(v.ns, v.pvc, b.sc, b.access, e2eSize, "")); err != nil {
			return err
		}
	}
	for _, v := range vols {
		pv, err := waitPVCBound(ctx, k, v.ns, v.pvc, 4*time.Minute)
		if err != nil {
			return err
		}
		v.pv = pv
		if v.hash, err = checkPV(ctx, k, b, v.ns, pv); err != nil {
			return err
		}
		size, err := b.volume(ctx, v.ns, v.hash)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", v.ns, v.pvc, err)
		}
		if size < gib {
			return fmt.Errorf("%s/%s: the backend volume has %d bytes, want at least %d", v.ns, v.pvc, size, gib)
		}
	}
	return nil
}

// checkPV checks a bound PV (driver, reclaim policy, the tenant in the volume ID) and
// returns the volume's object hash.
func checkPV(ctx context.Context, k *kube, b *e2eBackend, ns, pv string) (string, error) {
	var obj struct {
		Spec struct {
			CSI struct {
				Driver       string `json:"driver"`
				VolumeHandle string `json:"volumeHandle"`
			} `json:"csi"`
			ReclaimPolicy string `json:"persistentVolumeReclaimPolicy"`
		} `json:"spec"`
	}
	if err := k.getJSON(ctx, &obj, "get", "pv", pv); err != nil {
		return "", err
	}
	h := obj.Spec.CSI.VolumeHandle
	f := strings.Split(h, ":")
	switch {
	case obj.Spec.CSI.Driver != e2eDriverName:
		return "", fmt.Errorf("PV %s: driver %q", pv, obj.Spec.CSI.Driver)
	case obj.Spec.ReclaimPolicy != "Delete":
		return "", fmt.Errorf("PV %s: reclaim policy %q, the class says Delete", pv, obj.Spec.ReclaimPolicy)
	case len(f) != 5 || f[0] != "v1" || f[1] != b.name || f[2] != ns || len(f[4]) != 16:
		return "", fmt.Errorf("PV %s: volume handle %q, want v1:%s:%s:<location>:<hash>", pv, h, b.name, ns)
	}
	return f[4], nil
}

// stepAttached attaches every volume to node-1 through a VolumeAttachment (the csi-attacher
// calls ControllerPublishVolume) and reads the grant back from the storage.
func stepAttached(ctx context.Context, k *kube, b *e2eBackend, vols []*e2eVol) error {
	for _, v := range vols {
		v.va = vaName(v.pv)
		if err := createAttachment(ctx, k, v.va, v.pv); err != nil {
			return err
		}
	}
	for _, v := range vols {
		if err := waitAttached(ctx, k, b, v.va, v.ns, v.hash); err != nil {
			return fmt.Errorf("%s/%s: %w", v.ns, v.pvc, err)
		}
	}
	return nil
}

func createAttachment(ctx context.Context, k *kube, va, pv string) error {
	_, err := k.apply(ctx, fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: VolumeAttachment
metadata: {name: %s}
spec:
  attacher: %s
  nodeName: %s
  source: {persistentVolumeName: %s}
`, va, e2eDriverName, e2eNodeName, pv))
	return err
}

// waitAttached waits for status.attached of a VolumeAttachment, then requires the storage to
// show node-1's read-write grant on volume <hash>.
func waitAttached(ctx context.Context, k *kube, b *e2eBackend, va, tenant, hash string) error {
	err := poll(ctx, 3*time.Minute, func() (bool, string, error) {
		var obj struct {
			Status struct {
				Attached    bool `json:"attached"`
				AttachError *struct {
					Message string `json:"message"`
				} `json:"attachError"`
			} `json:"status"`
		}
		if err := k.getJSON(ctx, &obj, "get", "volumeattachment", va); err != nil {
			return false, err.Error(), nil
		}
		if obj.Status.Attached {
			return true, "", nil
		}
		if obj.Status.AttachError != nil {
			return false, "attachError: " + obj.Status.AttachError.Message, nil
		}
		return false, "status.attached is false", nil
	})
	if err != nil {
		return fmt.Errorf("VolumeAttachment %s: %w", va, err)
	}
	mode, err := b.attachment(ctx, tenant, hash)
	if err != nil {
		return fmt.Errorf("VolumeAttachment %s is attached, but the storage: %w", va, err)
	}
	if mode != "rw" {
		return fmt.Errorf("VolumeAttachment %s is attached, but the storage records %q for %s, want \"rw\"", va, mode, e2eNodeName)
	}
	return nil
}

// stepWritten writes a file into every volume through the node plugin (stage, publish,
// write, unpublish, unstage), for the restored volumes to show.
func stepWritten(ctx context.Context, n *nodePlugin, vols []*e2eVol) error {
	for _, v := range vols {
		v.data = fmt.Sprintf("written through node-1 into %s/%s (%s) at %s\n", v.ns, v.pvc, v.pv, time.Now().Format(time.RFC3339Nano))
		if err := n.withVolume(ctx, v.pv, v.va, func(dir string) error { return writeData(dir, v.data) }); err != nil {
			return fmt.Errorf("%s/%s: %w", v.ns, v.pvc, err)
		}
	}
	return nil
}

func stepExpanded(ctx context.Context, k *kube, b *e2eBackend, vols []*e2eVol) error {
	patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, e2eBigSize)
	for _, v := range vols {
		if _, err := k.run(ctx, "patch", "pvc", "-n", v.ns, v.pvc, "--type=merge", "-p", patch); err != nil {
			return err
		}
	}
	for _, v := range vols {
		// The resizer updates the PV once ControllerExpandVolume succeeded; without a kubelet,
		// a volume that needs node expansion stays at FileSystemResizePending.
		err := poll(ctx, 4*time.Minute, func() (bool, string, error) {
			pvCap, err := k.run(ctx, "get", "pv", v.pv, "-o", "jsonpath={.spec.capacity.storage}")
			if err != nil {
				return false, err.Error(), nil
			}
			var pvc struct {
				Status struct {
					Capacity   map[string]string `json:"capacity"`
					Conditions []struct {
						Type    string `json:"type"`
						Message string `json:"message"`
					} `json:"conditions"`
				} `json:"status"`
			}
			if err := k.getJSON(ctx, &pvc, "get", "pvc", "-n", v.ns, v.pvc); err != nil {
				return false, err.Error(), nil
			}
			var conds []string
			for _, c := range pvc.Status.Conditions {
				conds = append(conds, c.Type+" "+c.Message)
			}
			st := fmt.Sprintf("PV capacity %s, PVC capacity %s, conditions %v", pvCap, pvc.Status.Capacity["storage"], conds)
			if string(pvCap) != e2eBigSize {
				return false, st + lastEvent(ctx, k, v.ns, v.pvc), nil
			}
			if pvc.Status.Capacity["storage"] == e2eBigSize {
				return true, "", nil
			}
			for _, c := range pvc.Status.Conditions {
				if c.Type == "FileSystemResizePending" && b.kind == "rbd" {
					return true, "", nil
				}
			}
			return false, st, nil
		})
		if err != nil {
			return fmt.Errorf("%s/%s to %s: %w", v.ns, v.pvc, e2eBigSize, err)
		}
		size, err := b.volume(ctx, v.ns, v.hash)
		if err != nil {
			return fmt.Errorf("%s/%s after expansion: %w", v.ns, v.pvc, err)
		}
		if size != 2*gib {
			return fmt.Errorf("%s/%s: the backend says %d bytes after expansion to %s, want %d", v.ns, v.pvc, size, e2eBigSize, 2*gib)
		}
	}
	return nil
}

func stepSnapshot(ctx context.Context, k *kube, b *e2eBackend, vols []*e2eVol) error {
	for _, v := range vols {
		if _, err := k.apply(ctx, fmt.Sprintf(`apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: %s, namespace: %s}
spec:
  volumeSnapshotClassName: %s
  source: {persistentVolumeClaimName: %s}
`, v.snap, v.ns, b.vsc, v.pvc)); err != nil {
			return err
		}
	}
	for _, v := range vols {
		err := poll(ctx, 4*time.Minute, func() (bool, string, error) {
			var vs struct {
				Status *struct {
					ReadyToUse                     *bool  `json:"readyToUse"`
					BoundVolumeSnapshotContentName string `json:"boundVolumeSnapshotContentName"`
					Error                          *struct {
						Message string `json:"message"`
					} `json:"error"`
				} `json:"status"`
			}
			if err := k.getJSON(ctx, &vs, "get", "volumesnapshot", "-n", v.ns, v.snap); err != nil {
				return false, err.Error(), nil
			}
			if vs.Status == nil {
				return false, "no status yet" + lastEvent(ctx, k, v.ns, v.snap), nil
			}
			v.content = vs.Status.BoundVolumeSnapshotContentName
			if vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
				return true, "", nil
			}
			st := "readyToUse is not true"
			if vs.Status.Error != nil {
				st += "; error: " + vs.Status.Error.Message
			}
			return false, st + lastEvent(ctx, k, v.ns, v.snap), nil
		})
		if err != nil {
			return fmt.Errorf("VolumeSnapshot %s/%s: %w", v.ns, v.snap, err)
		}
		if err := checkSnapshot(ctx, k, b, v); err != nil {
			return fmt.Errorf("VolumeSnapshot %s/%s: %w", v.ns, v.snap, err)
		}
	}
	return nil
}

// checkSnapshot requires the snapshot handle of the bound content to name the source volume
// and the storage to hold that snapshot, taken of that volume.
func checkSnapshot(ctx context.Context, k *kube, b *e2eBackend, v *e2eVol) error {
	handle, err := k.run(ctx, "get", "volumesnapshotcontent", v.content, "-o", "jsonpath={.status.snapshotHandle}")
	if err != nil {
		return err
	}
	// s1:<backend>:<tenant>:<location>:<volume hash>:<snapshot hash>
	f := strings.Split(string(handle), ":")
	if len(f) != 6 || f[0] != "s1" || f[1] != b.name || f[2] != v.ns || f[4] != v.hash || len(f[5]) != 16 {
		return fmt.Errorf("content %s: snapshot handle %q, want s1:%s:%s:<location>:%s:<hash>", v.content, handle, b.name, v.ns, v.hash)
	}
	return b.snapshot(ctx, v.ns, v.hash, f[5])
}

// stepRestored restores every snapshot into a new PVC, attaches it and reads back through the
// node plugin the file written before the snapshot.
func stepRestored(ctx context.Context, k *kube, n *nodePlugin, b *e2eBackend, vols []*e2eVol) error {
	for _, v := range vols {
		if _, err := k.apply(ctx, pvcYAML(v.ns, v.restored, b.sc, b.access, e2eBigSize, v.snap)); err != nil {
			return err
		}
	}
	for _, v := range vols {
		pv, err := waitPVCBound(ctx, k, v.ns, v.restored, 5*time.Minute)
		if err != nil {
			return err
		}
		v.restoredPV = pv
		hash, err := checkPV(ctx, k, b, v.ns, pv)
		if err != nil {
			return err
		}
		if hash == v.hash {
			return fmt.Errorf("%s/%s: the restored PV %s has the source volume's hash", v.ns, v.restored, pv)
		}
		if _, err := b.volume(ctx, v.ns, hash); err != nil {
			return fmt.Errorf("%s/%s (restored): %w", v.ns, v.restored, err)
		}
		v.restoredHash = hash
		// Nothing is attached to the new volume yet, whatever its source had.
		if mode, err := b.attachment(ctx, v.ns, hash); err != nil || mode != "" {
			return fmt.Errorf("%s/%s (restored, not attached yet): the storage records %q for %s (%v)", v.ns, v.restored, mode, e2eNodeName, err)
		}
		v.restoredVA = vaName(pv)
		if err := createAttachment(ctx, k, v.restoredVA, pv); err != nil {
			return err
		}
	}
	for _, v := range vols {
		if err := waitAttached(ctx, k, b, v.restoredVA, v.ns, v.restoredHash); err != nil {
			return fmt.Errorf("%s/%s (restored): %w", v.ns, v.restored, err)
		}
		if err := n.withVolume(ctx, v.restoredPV, v.restoredVA, func(dir string) error { return checkData(dir, v.data) }); err != nil {
			return fmt.Errorf("%s/%s (restored from %s): %w", v.ns, v.restored, v.snap, err)
		}
	}
	return nil
}

func stepDeleted(ctx context.Context, k *kube, b *e2eBackend, vols []*e2eVol) error {
	var errs []error
	// 1. detach: the attacher calls ControllerUnpublishVolume and drops its finalizer
	var vas []string
	for _, v := range vols {
		for _, va := range []string{v.va, v.restoredVA} {
			if va != "" {
				vas = append(vas, va)
			}
		}
	}
	if len(vas) > 0 {
		if _, err := k.run(ctx, append([]string{"delete", "volumeattachment", "--ignore-not-found", "--wait=false"}, vas...)...); err != nil {
			errs = append(errs, err)
		}
		for _, va := range vas {
			if err := waitGone(ctx, k, 3*time.Minute, "", "volumeattachment", va); err != nil {
				errs = append(errs, err)
			}
		}
		// ControllerUnpublishVolume took the grants back on the storage.
		for _, v := range vols {
			for _, hash := range []string{v.hash, v.restoredHash} {
				if hash == "" {
					continue
				}
				if mode, err := b.attachment(ctx, v.ns, hash); err != nil || mode != "" {
					errs = append(errs, fmt.Errorf("%s volume %s after detach: the storage records %q for %s (%v)", v.ns, hash, mode, e2eNodeName, err))
				}
			}
		}
	}
	// 2. the restored volumes, 3. the snapshots, 4. the source volumes: children before
	// parents, as a user would have to on storage that keeps clone links.
	deletePVCs := func(name func(*e2eVol) string, pv func(*e2eVol) string) {
		for _, v := range vols {
			if _, err := k.run(ctx, "delete", "pvc", "-n", v.ns, name(v), "--ignore-not-found", "--wait=false"); err != nil {
				errs = append(errs, err)
			}
		}
		for _, v := range vols {
			if err := waitGone(ctx, k, 4*time.Minute, v.ns, "pvc", name(v)); err != nil {
				errs = append(errs, err)
			}
			if p := pv(v); p != "" {
				if err := waitGone(ctx, k, 4*time.Minute, "", "pv", p); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	deletePVCs(func(v *e2eVol) string { return v.restored }, func(v *e2eVol) string { return v.restoredPV })
	for _, v := range vols {
		if _, err := k.run(ctx, "delete", "volumesnapshot", "-n", v.ns, v.snap, "--ignore-not-found", "--wait=false"); err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range vols {
		if err := waitGone(ctx, k, 4*time.Minute, v.ns, "volumesnapshot", v.snap); err != nil {
			errs = append(errs, err)
		}
		if v.content != "" {
			if err := waitGone(ctx, k, 4*time.Minute, "", "volumesnapshotcontent", v.content); err != nil {
				errs = append(errs, err)
			}
		}
	}
	deletePVCs(func(v *e2eVol) string { return v.pvc }, func(v *e2eVol) string { return v.pv })

	// 5. nothing of the test is left on the backend
	var left []string
	err := poll(ctx, 2*time.Minute, func() (bool, string, error) {
		var err error
		left, err = b.leftovers(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return len(left) == 0, fmt.Sprintf("left on the backend: %s", strings.Join(left, ", ")), nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// --- Kubernetes helpers ------------------------------------------------------------------

type kube struct {
	c *Cluster
	t *testing.T
}

func (k *kube) run(ctx context.Context, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return k.c.Kubectl(cctx, args...)
}

func (k *kube) apply(ctx context.Context, manifest string) ([]byte, error) {
	f, err := os.CreateTemp(k.c.Dir, "manifest-*.yaml")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(manifest); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	return k.run(ctx, "apply", "--validate=strict", "-f", f.Name())
}

func (k *kube) getJSON(ctx context.Context, into any, args ...string) error {
	out, err := k.run(ctx, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, into)
}

func pvcYAML(ns, name, sc, access, size, fromSnapshot string) string {
	ds := ""
	if fromSnapshot != "" {
		ds = fmt.Sprintf("  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: %s}\n", fromSnapshot)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: %s}
spec:
  storageClassName: %s
  accessModes: [%s]
  volumeMode: Filesystem
  resources: {requests: {storage: %s}}
%s`, name, ns, sc, access, size, ds)
}

// waitPVCBound waits for a PVC to be Bound and returns its PV's name.
func waitPVCBound(ctx context.Context, k *kube, ns, name string, timeout time.Duration) (string, error) {
	var pv string
	err := poll(ctx, timeout, func() (bool, string, error) {
		out, err := k.run(ctx, "get", "pvc", "-n", ns, name, "-o", "jsonpath={.status.phase} {.spec.volumeName}")
		if err != nil {
			return false, err.Error(), nil
		}
		phase, vol, _ := strings.Cut(string(out), " ")
		if phase == "Bound" && vol != "" {
			pv = vol
			return true, "", nil
		}
		return false, "phase " + phase + lastEvent(ctx, k, ns, name), nil
	})
	if err != nil {
		return "", fmt.Errorf("PVC %s/%s not Bound: %w", ns, name, err)
	}
	return pv, nil
}

// waitGone waits until the object does not exist.
func waitGone(ctx context.Context, k *kube, timeout time.Duration, ns, kind, name string) error {
	args := []string{"get", kind, name, "--ignore-not-found", "-o", "name"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	err := poll(ctx, timeout, func() (bool, string, error) {
		out, err := k.run(ctx, args...)
		if err != nil {
			return false, err.Error(), nil
		}
		if len(bytes.TrimSpace(out)) == 0 {
			return true, "", nil
		}
		return false, "still there" + lastEvent(ctx, k, ns, name), nil
	})
	if err != nil {
		where := name
		if ns != "" {
			where = ns + "/" + name
		}
		return fmt.Errorf("%s %s not deleted: %w", kind, where, err)
	}
	return nil
}

// lastEvent is "; last event: <reason>: <message>" for the object, or "".
func lastEvent(ctx context.Context, k *kube, ns, name string) string {
	args := []string{"get", "events", "--field-selector", "involvedObject.name=" + name}
	if ns != "" {
		args = append(args, "-n", ns)
	} else {
		args = append(args, "-A")
	}
	var list struct {
		Items []struct {
			Type          string    `json:"type"`
			Reason        string    `json:"reason"`
			Message       string    `json:"message"`
			LastTimestamp time.Time `json:"lastTimestamp"`
			EventTime     time.Time `json:"eventTime"`
		} `json:"items"`
	}
	if err := k.getJSON(ctx, &list, args...); err != nil || len(list.Items) == 0 {
		return ""
	}
	latest := list.Items[0]
	when := func(i int) time.Time {
		e := list.Items[i]
		if e.LastTimestamp.After(e.EventTime) {
			return e.LastTimestamp
		}
		return e.EventTime
	}
	best := when(0)
	for i := range list.Items {
		if w := when(i); !w.Before(best) {
			best, latest = w, list.Items[i]
		}
	}
	return fmt.Sprintf("; last event: %s %s: %s", latest.Type, latest.Reason, latest.Message)
}

// vaName is the name the attach-detach controller gives a CSI VolumeAttachment.
func vaName(pv string) string {
	sum := sha256.Sum256([]byte(pv + e2eDriverName + e2eNodeName))
	return "csi-" + hex.EncodeToString(sum[:])
}

// poll calls f with backoff (0.5 s doubling to 5 s) until it reports done, returns an error,
// or the timeout; a timeout error carries f's last status.
func poll(ctx context.Context, timeout time.Duration, f func() (done bool, status string, err error)) error {
	deadline := time.Now().Add(timeout)
	delay := 500 * time.Millisecond
	var last string
	for {
		done, st, err := f()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		last = st
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), last)
		case <-time.After(delay):
		}
		if delay *= 2; delay > 5*time.Second {
			delay = 5 * time.Second
		}
	}
}

// --- the example classes and their secrets --------------------------------------------

type exampleClass struct {
	sc, vsc, backend string
	secrets          map[[2]string]bool // {namespace, name} the classes name
}

type classDoc struct {
	Kind       string                `json:"kind"`
	Metadata   struct{ Name string } `json:"metadata"`
	Parameters map[string]string     `json:"parameters"`
}

// readExampleClasses reads deploy/kubernetes/storageclass-<label>.yaml and the
// VolumeSnapshotClass of the same backend, keyed by label.
func readExampleClasses(dir string) (map[string]*exampleClass, error) {
	vscData, err := os.ReadFile(filepath.Join(dir, "volumesnapshotclass.yaml"))
	if err != nil {
		return nil, err
	}
	vscs := map[string]classDoc{}
	for _, doc := range splitYAML(vscData) {
		var d classDoc
		if err := yaml.Unmarshal(doc, &d); err != nil {
			return nil, err
		}
		if d.Kind == "VolumeSnapshotClass" {
			vscs[d.Parameters["backend"]] = d
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "storageclass-*.yaml"))
	if err != nil {
		return nil, err
	}
	out := map[string]*exampleClass{}
	for _, f := range files {
		label := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "storageclass-"), ".yaml")
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d classDoc
		if err := yaml.Unmarshal(data, &d); err != nil {
			return nil, err
		}
		be := d.Parameters["backend"]
		v, ok := vscs[be]
		if !ok {
			return nil, fmt.Errorf("%s: no VolumeSnapshotClass in volumesnapshotclass.yaml for backend %q", f, be)
		}
		ec := &exampleClass{sc: d.Metadata.Name, vsc: v.Metadata.Name, backend: be, secrets: map[[2]string]bool{}}
		for _, params := range []map[string]string{d.Parameters, v.Parameters} {
			for key, name := range params {
				if p, ok := strings.CutSuffix(key, "-secret-name"); ok {
					ec.secrets[[2]string{params[p+"-secret-namespace"], name}] = true
				}
			}
		}
		out[label] = ec
	}
	return out, nil
}

func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// applySecrets creates every secret the classes name, in the namespace they name, with the
// local credentials of the backend kind.
func applySecrets(ctx context.Context, k *kube, classes map[string]*exampleClass, data map[string]map[string]string) error {
	var docs []string
	namespaces := map[string]bool{}
	for label, cl := range classes {
		d, ok := data[label]
		if !ok {
			continue
		}
		keys := make([][2]string, 0, len(cl.secrets))
		for s := range cl.secrets {
			keys = append(keys, s)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
		for _, s := range keys {
			if s[0] == "" {
				return fmt.Errorf("class %s names secret %s without a namespace", cl.sc, s[1])
			}
			namespaces[s[0]] = true
			sd, _ := json.Marshal(d)
			docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\ntype: Opaque\nstringData: %s\n", s[1], s[0], sd))
		}
	}
	for ns := range namespaces {
		if _, err := k.run(ctx, "get", "namespace", ns); err != nil {
			if _, err := k.run(ctx, "create", "namespace", ns); err != nil {
				return err
			}
		}
	}
	_, err := k.apply(ctx, strings.Join(docs, "---\n"))
	return err
}

func keyringKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == "key" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s: no key", path)
}

func credentialsFile(path string) (user, pass string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var c struct{ Username, Password string }
	if err := yaml.Unmarshal(data, &c); err != nil {
		return "", "", err
	}
	return c.Username, c.Password, nil
}

// --- the driver process -------------------------------------------------------------------

// driverBinary is $SHIPHOLD_E2E_DRIVER, else bin/shiphold-csi of make build (hack/e2e.sh runs
// it first), else (or with SHIPHOLD_E2E_REBUILD=1) a fresh build into dir.
func driverBinary(ctx context.Context, t *testing.T, root, dir string) (string, error) {
	if p := os.Getenv("SHIPHOLD_E2E_DRIVER"); p != "" {
		return p, nil
	}
	bin := filepath.Join(root, "bin", "shiphold-csi")
	if _, err := os.Stat(bin); err == nil && os.Getenv("SHIPHOLD_E2E_REBUILD") != "1" {
		return bin, nil
	}
	bin = filepath.Join(dir, "shiphold-csi")
	t.Logf("building %s", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/shiphold-csi")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=-tags=pacific")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/shiphold-csi: %w\n%s", err, out)
	}
	return bin, nil
}

func startDriverProcess(bin, logPath string, env []string, args ...string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return nil, err
	}
	p := &process{name: "shiphold-csi", cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitDriver waits for the socket and the metrics endpoint and returns NodeGetInfo's node ID.
func waitDriver(ctx context.Context, p *process, sock, metricsURL string) (string, error) {
	var nodeID string
	err := poll(ctx, 60*time.Second, func() (bool, string, error) {
		if !p.running() {
			return false, "", fmt.Errorf("exited: %v", p.err)
		}
		if _, err := os.Stat(sock); err != nil {
			return false, "no socket yet", nil
		}
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return false, err.Error(), nil
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := csi.NewIdentityClient(conn).Probe(cctx, &csi.ProbeRequest{}); err != nil {
			return false, "Probe: " + err.Error(), nil
		}
		info, err := csi.NewNodeClient(conn).NodeGetInfo(cctx, &csi.NodeGetInfoRequest{})
		if err != nil {
			return false, "NodeGetInfo: " + err.Error(), nil
		}
		nodeID = info.GetNodeId()
		resp, err := http.Get(metricsURL)
		if err != nil {
			return false, "metrics: " + err.Error(), nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, "metrics: " + resp.Status, nil
	})
	return nodeID, err
}

func checkMetrics(ctx context.Context, url, save string, backends []*e2eBackend) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := os.WriteFile(save, body, 0o644); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	// shiphold_csi_operations_total{backend="ceph-rbd",grpc_code="OK",operation="CreateVolume"} 4
	ok := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		rest, found := strings.CutPrefix(line, "shiphold_csi_operations_total{")
		if !found {
			continue
		}
		labelsPart, value, found := strings.Cut(rest, "} ")
		if !found {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(labelsPart, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		if labels["operation"] != "CreateVolume" || labels["grpc_code"] != "OK" {
			continue
		}
		n, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err == nil {
			ok[labels["backend"]] += n
		}
	}
	var missing []string
	for _, b := range backends {
		if ok[b.name] <= 0 {
			missing = append(missing, b.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf(`no shiphold_csi_operations_total{operation="CreateVolume",grpc_code="OK"} for backend(s) %s (have %v)`, strings.Join(missing, ", "), ok)
	}
	return nil
}

// saveLogs copies the component logs out of the cluster's work directory before Stop
// removes it.
func saveLogs(t *testing.T, c *Cluster, dst string) {
	_ = os.RemoveAll(dst)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "logs", "*.log"))
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(dst, filepath.Base(l)), data, 0o644)
		}
	}
	t.Logf("component logs saved in %s", dst)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
