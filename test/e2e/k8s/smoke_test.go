package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/test/harness"
)

// TestControlPlaneSmoke_RealKubernetes starts the real control plane from the cached tools,
// applies deploy/kubernetes with kubectl (the API server validates every object
// strictly) and provisions a PVC through the real csi-provisioner against a fake CSI
// controller. The tools are a prerequisite (requireTools): hack/e2e.sh builds them first and
// runs this test after, so its result does not depend on the state of the tools cache.
func TestControlPlaneSmoke_RealKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane; not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "csi.sock")
	opts := Options{RepoRoot: root, CSIAddress: sock, Log: testLog{t}}
	requireTools(ctx, t, root, opts)

	fake := &fakeCSI{}
	serveFakeCSI(t, sock, fake)

	start := time.Now()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{ToolAPIServer, ToolControllerManager, ToolProvisioner} {
				t.Logf("--- tail of %s:\n%s", n, tail(c.LogPath(n), 15))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	t.Logf("control plane up in %s", time.Since(start).Round(time.Millisecond))

	// The whole deploy/kubernetes tree, validated by the API server itself.
	if out, err := c.Kubectl(ctx, "apply", "--validate=strict", "-k", filepath.Join(root, "deploy", "kubernetes")); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("applied:\n%s", out)
	}
	out, err := c.Kubectl(ctx, "get", "storageclass", "shiphold-rbd", "-o", "jsonpath={.provisioner} {.allowVolumeExpansion} {.parameters.backend}")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "shiphold.csi.io true ceph-rbd" {
		t.Errorf("StorageClass shiphold-rbd = %q", got)
	}
	if _, err := c.Kubectl(ctx, "get", "volumesnapshotclass", "shiphold-rbd"); err != nil {
		t.Error(err)
	}

	// A PVC of tenant "tenant-a" gets provisioned through the real csi-provisioner.
	if _, err := c.Kubectl(ctx, "create", "namespace", "tenant-a"); err != nil {
		t.Fatal(err)
	}
	pvc := filepath.Join(t.TempDir(), "pvc.yaml")
	if err := os.WriteFile(pvc, []byte(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: tenant-a}
spec:
  storageClassName: shiphold-rbd
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", pvc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "wait", "-n", "tenant-a", "--for=jsonpath={.status.phase}=Bound", "--timeout=120s", "pvc/data"); err != nil {
		t.Fatal(err)
	}
	reqs := fake.createRequests()
	if len(reqs) == 0 {
		t.Fatal("PVC bound but the fake CSI saw no CreateVolume")
	}
	r := reqs[len(reqs)-1]
	if got := r.GetParameters()["csi.storage.k8s.io/pvc/namespace"]; got != "tenant-a" {
		t.Errorf("CreateVolume pvc/namespace = %q, want tenant-a (--extra-create-metadata)", got)
	}
	if got := r.GetParameters()["backend"]; got != "ceph-rbd" {
		t.Errorf("CreateVolume backend = %q", got)
	}
	if got := r.GetSecrets()["userID"]; got != "admin" {
		t.Errorf("CreateVolume secrets userID = %q, want the provisioner secret of the class", got)
	}
	if got := r.GetCapacityRange().GetRequiredBytes(); got != 1<<30 {
		t.Errorf("CreateVolume required bytes = %d", got)
	}
	for _, n := range append([]string{ToolEtcd, ToolAPIServer, ToolControllerManager, ToolSnapshotController}, AllSidecars...) {
		if !c.Running(n) {
			t.Errorf("%s is not running:\n%s", n, tail(c.LogPath(n), 15))
		}
	}
}

// TestStartFailureStopsEverything checks the cleanup promise with stand-in tools: when Start
// fails half-way, what it had started is gone.
func TestStartFailureStopsEverything(t *testing.T) {
	dir := t.TempDir()
	// a tools script whose etcd runs but never gets healthy: Start must give up and stop it
	if err := os.MkdirAll(filepath.Join(dir, "hack"), 0o755); err != nil {
		t.Fatal(err)
	}
	etcd := filepath.Join(dir, "etcd.sh")
	mustWrite(t, etcd, "#!/bin/sh\necho $$ > "+filepath.Join(dir, "etcd.pid")+"\nexec sleep 300\n")
	mustWrite(t, filepath.Join(dir, "hack", "k8s-tools.sh"),
		"#!/bin/sh\necho etcd "+etcd+"\n")

	c, err := Start(context.Background(), Options{RepoRoot: dir, SkipSnapshots: true, StartTimeout: 2 * time.Second, Log: testLog{t}})
	if err == nil {
		c.Stop()
		t.Fatal("Start succeeded with an apiserver that exits")
	}
	if !strings.Contains(err.Error(), "etcd not ready") {
		t.Fatalf("unexpected error: %v", err)
	}
	pidData, err := os.ReadFile(filepath.Join(dir, "etcd.pid"))
	if err != nil {
		t.Fatalf("fake etcd never started: %v", err)
	}
	pid := strings.TrimSpace(string(pidData))
	if _, err := os.Stat("/proc/" + pid); err == nil {
		if status, _ := os.ReadFile("/proc/" + pid + "/stat"); !strings.Contains(string(status), ") Z ") {
			t.Errorf("fake etcd (pid %s) still running after a failed Start", pid)
		}
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// requireTools requires the cached control-plane tools, kubectl among them (harness.Require:
// a skip, or a failure under SHIPHOLD_REQUIRE_STACK=1 as hack/e2e.sh sets).
func requireTools(ctx context.Context, t *testing.T, root string, opts Options) {
	t.Helper()
	missing, err := MissingTools(ctx, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	harness.Require(t, "the control-plane tools ("+strings.Join(missing, ", ")+")", len(missing) == 0,
		"build them with hack/k8s-tools.sh build (cached in $SHIPHOLD_TOOLS_CACHE or ~/.cache/shiphold/tools; 25-45 min cold)")
	if k := os.Getenv("KUBECTL"); k != "" {
		_, err := os.Stat(k)
		harness.Require(t, "$KUBECTL", err == nil, fmt.Sprintf("%v: unset it to use the cached kubectl", err))
	}
}
