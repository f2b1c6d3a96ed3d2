package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
)

// TestE2EPods: pods on real PVCs. The control plane of TestE2EControlPlane plus
// kube-scheduler and a node (containerd, runc and a kubelet of the API server's version, see
// node.go); the controller plugin behind the sidecars, the node plugin with the DaemonSet's
// arguments registered through node-driver-registrar, and the attach-detach controller of
// kube-controller-manager making every VolumeAttachment. It prints
//
//	e2e-pod <backend> <step>: ok
//	e2e-pod <backend> latency: pvc_bound_p50=Xs pod_running_p50=Xs pod_running_p99=Xs
//
// for rbd (filesystem), rbd-block, cephfs and isilon (through the NFS stand-in).
func TestE2EPods(t *testing.T) {
	ctx, root, work, outDir := e2eWorkspace(t, "pod", 55*time.Minute)
	sock := filepath.Join(work, "controller.sock")
	opts := Options{RepoRoot: root, CSIAddress: sock, Log: testLog{t}, StartTimeout: 120 * time.Second, Scheduler: true}
	requireTools(ctx, t, root, opts)
	requireNodeTools(ctx, t, root)

	// An interrupted run's mounts and daemons hold its volumes: gone before the backends'
	// leftovers are purged.
	if err := CleanStaleNode("/var/lib/kubelet"); err != nil {
		t.Fatalf("leftovers of an interrupted run: %v", err)
	}
	st := setupBackends(ctx, t, root, work, false)
	for _, b := range st.backends {
		b.node = NodeName
	}
	bin, err := driverBinary(ctx, t, root, work)
	if err != nil {
		t.Fatal(err)
	}

	// --- the controller plugin, as deploy/kubernetes/controller.yaml runs it
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	ctrlLog := filepath.Join(outDir, "e2e-pods-controller.log")
	ctrl, err := startDriverProcess(bin, ctrlLog, nil,
		"--endpoint=unix://"+sock, "--nodeid=controller", "--mode=controller", "--config="+st.cfgPath,
		"--drivername="+e2eDriverName, fmt.Sprintf("--metrics-address=127.0.0.1:%d", ports[0]), "--v=4")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.stop(10 * time.Second) })

	// --- control plane and node
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		saveLogs(t, c, filepath.Join(outDir, "e2e-pods-k8s-logs"))
		if err := c.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	node, err := c.StartNode(ctx, nodeOptions(t))
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer scancel()
		if err := node.Stop(sctx); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	// --- what users apply
	k := &kube{c: c, t: t}
	for _, f := range []string{"namespace.yaml", "csidriver.yaml", "storageclass-rbd.yaml", "storageclass-cephfs.yaml",
		"storageclass-isilon.yaml", "volumesnapshotclass.yaml"} {
		if _, err := k.run(ctx, "apply", "--validate=strict", "-f", filepath.Join(root, "deploy", "kubernetes", f)); err != nil {
			t.Fatal(err)
		}
	}
	isiUser, isiPass, err := credentialsFile(st.cfg.Backends[2].Section.(*isilon.Config).CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := applySecrets(ctx, k, st.classes, map[string]map[string]string{
		"rbd":    {"userID": st.ceph.Credentials.UserID, "userKey": st.cephKey},
		"cephfs": {"userID": st.ceph.Credentials.UserID, "userKey": st.cephKey},
		"isilon": {"username": isiUser, "password": isiPass},
	}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range e2eTenants {
		if _, err := k.run(ctx, "create", "namespace", ns); err != nil {
			t.Fatal(err)
		}
	}

	// --- the node plugin, registered the real way: from the image when one is cached
	pluginLog := filepath.Join(outDir, "e2e-pods-node-plugin.log")
	_ = os.Remove(pluginLog)
	plugin := startNodePlugin(ctx, t, k, node, root, bin, st, pluginLog)
	if err := node.StartRegistrar(ctx, plugin.socket()); err != nil {
		t.Fatal(err)
	}
	if err := waitCSINode(ctx, k, pluginLog); err != nil {
		t.Fatal(err)
	}
	fmt.Println("e2e-pod node-plugin: " + plugin.describe())

	var results []string
	env := &podEnv{k: k, node: node, plugin: plugin, t: t, emit: func(line string) {
		fmt.Println(line)
		results = append(results, line)
	}}
	env.callLogs = func(ctx context.Context) []byte {
		logs, _ := os.ReadFile(ctrlLog)
		if _, ok := plugin.(*podPlugin); ok {
			return append(logs, podLogs(ctx, k)...)
		}
		node, _ := os.ReadFile(pluginLog)
		return append(logs, node...)
	}
	failed := false
	report := func(label, step string, err error, note string) bool {
		line := fmt.Sprintf("e2e-pod %s %s: ok", label, step)
		if note != "" {
			line += " (" + note + ")"
		}
		if err != nil {
			line = fmt.Sprintf("e2e-pod %s %s: FAIL %s", label, step, oneLine(err.Error()))
			failed = true
		}
		fmt.Println(line)
		results = append(results, line)
		return err == nil
	}
	for _, b := range podBackends(st.backends) {
		env.run(ctx, b, report)
	}
	_ = os.WriteFile(filepath.Join(outDir, "e2e-pods-summary.txt"), []byte(strings.Join(results, "\n")+"\n"), 0o644)
	if !ctrl.running() {
		t.Errorf("the controller plugin exited during the test:\n%s", tail(ctrlLog, 30))
	}
	if failed {
		t.Errorf("pod steps failed (node plugin log %s, component logs %s):\n%s", pluginLog,
			filepath.Join(outDir, "e2e-pods-k8s-logs"), strings.Join(results, "\n"))
	}
}

// startNodePlugin runs the node plugin from the image hack/image.sh built, in the DaemonSet,
// when that image is cached ($SHIPHOLD_E2E_IMAGE=0 never, =1 requires it), else as a host
// process with the DaemonSet's arguments.
func startNodePlugin(ctx context.Context, t *testing.T, k *kube, node *Node, root, bin string, st *e2eStack, pluginLog string) pluginRunner {
	// No NFS client in this kernel: Isilon mounts go through the test-only stand-in.
	standIn := map[string]string{isilon.StandInEnv: st.sim.Root}
	archive := ""
	if os.Getenv("SHIPHOLD_E2E_IMAGE") != "0" {
		archive = imageArchive(root)
	}
	if os.Getenv("SHIPHOLD_E2E_IMAGE") == "1" && archive == "" {
		t.Fatal("SHIPHOLD_E2E_IMAGE=1 but no image is cached: run hack/image.sh build")
	}
	if archive != "" {
		dirs := map[string]bool{st.sim.Root: true}
		for _, b := range st.cfg.Backends {
			switch s := b.Section.(type) {
			case *rbd.Config:
				dirs[filepath.Dir(s.Credentials.KeyringFile)] = true
			case *cephfs.Config:
				dirs[filepath.Dir(s.Credentials.KeyringFile)] = true
			case *isilon.Config:
				dirs[filepath.Dir(s.CredentialsFile)] = true
			}
		}
		p, err := startPodPlugin(ctx, k, node, root, archive, st.cfgPath, keys(dirs), standIn)
		t.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer scancel()
			_ = os.WriteFile(pluginLog, podLogs(sctx, k), 0o644)
			if p != nil {
				if err := p.stop(sctx); err != nil {
					t.Errorf("node plugin DaemonSet: %v", err)
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	plugin, err := newNodePlugin(root, bin, st.cfgPath, pluginLog, []string{isilon.StandInEnv + "=" + st.sim.Root})
	if err != nil {
		t.Fatal(err)
	}
	if err := plugin.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := plugin.stop(sctx); err != nil {
			t.Errorf("node plugin: %v", err)
		}
	})
	return plugin
}

// podLogs is the node plugin container's log, this run's and the one before its restart.
func podLogs(ctx context.Context, k *kube) []byte {
	prev, _ := k.run(ctx, "logs", "-n", "shiphold", "-l", "app.kubernetes.io/name=shiphold-node", "--previous", "--tail=-1")
	cur, _ := k.run(ctx, "logs", "-n", "shiphold", "-l", "app.kubernetes.io/name=shiphold-node", "--tail=-1")
	return append(prev, cur...)
}

// requireNodeTools fails (never skips) when the node's commands or tools are missing.
func requireNodeTools(ctx context.Context, t *testing.T, root string) {
	t.Helper()
	tools, err := ToolPaths(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{ToolScheduler, ToolKubelet, ToolRegistrar} {
		if _, ok := tools[n]; !ok {
			t.Fatalf("%s is not built: run hack/k8s-tools.sh build (hack/e2e.sh does)", n)
		}
	}
	for _, cmd := range append(NodeTools, "busybox", "losetup", "setsid") {
		if _, err := execLookPath(cmd); err != nil {
			t.Fatalf("%s is missing: hack/install-deps.sh installs containerd, runc and busybox-static", cmd)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the pod test runs a kubelet and mounts volumes: run it as root")
	}
}

// waitCSINode waits for the kubelet to register the driver (CSINode lists it with the node ID
// NodeGetInfo answered).
func waitCSINode(ctx context.Context, k *kube, pluginLog string) error {
	err := poll(ctx, 2*time.Minute, func() (bool, string, error) {
		out, err := k.run(ctx, "get", "csinode", NodeName, "-o",
			fmt.Sprintf(`jsonpath={.spec.drivers[?(@.name=="%s")].nodeID}`, e2eDriverName))
		if err != nil {
			return false, err.Error(), nil
		}
		id := strings.TrimSpace(string(out))
		return strings.HasPrefix(id, NodeName), "CSINode driver node ID " + id, nil
	})
	if err != nil {
		return fmt.Errorf("the kubelet did not register %s: %w\n%s", e2eDriverName, err, tail(pluginLog, 20))
	}
	return nil
}

// nodeOptions: the kubelet's defaults, but $SHIPHOLD_E2E_NODE_STATUS_PERIOD (e.g. 2s) sets its
// nodeStatusUpdateFrequency, to see what the kubelet's wait for its node status costs the
// latency step (the e2e-pod node line says so when set).
func nodeOptions(t *testing.T) NodeOptions {
	v := os.Getenv("SHIPHOLD_E2E_NODE_STATUS_PERIOD")
	if v == "" {
		return NodeOptions{}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("SHIPHOLD_E2E_NODE_STATUS_PERIOD=%q: want a duration such as 2s", v)
	}
	fmt.Printf("e2e-pod node: the kubelet's nodeStatusUpdateFrequency is %s (SHIPHOLD_E2E_NODE_STATUS_PERIOD; default 10s)\n", d)
	return NodeOptions{NodeStatusPeriod: d}
}
