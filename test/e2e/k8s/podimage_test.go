package k8s

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/yaml"
)

// The node plugin from the image hack/image.sh builds from the Dockerfile, run by the kubelet
// from the DaemonSet of deploy/kubernetes/node.yaml. The DaemonSet is applied with what this
// machine needs changed, and nothing else: the image (built here, never pulled), the test's
// config in the shiphold-config ConfigMap and the host directories it names (keyrings, the
// OneFS simulator's tree for the NFS stand-in), and without the node-driver-registrar and
// livenessprobe containers and the liveness probe they serve (their upstream images cannot be
// pulled here; the registrar stand-in runs as a host process on the same sockets).

// pluginRunner is the node plugin, as a host process or as a container the kubelet runs.
type pluginRunner interface {
	// killContainer kills every process of the plugin's container, as a runtime does.
	killContainer(ctx context.Context) (int, error)
	// restart brings the plugin back (or waits for the kubelet to) and waits for its socket.
	restart(ctx context.Context) error
	socket() string
	describe() string
}

func (p *nodePluginProc) socket() string { return p.Sock }
func (p *nodePluginProc) describe() string {
	return "the node plugin runs as a host process with the DaemonSet's arguments, in cgroups of its own"
}

func (p *nodePluginProc) restart(ctx context.Context) error {
	if err := p.start(); err != nil {
		return err
	}
	if _, err := waitDriver(ctx, p.proc, p.Sock, p.MetricsURL); err != nil {
		return fmt.Errorf("the node plugin did not come back: %w\n%s", err, tail(p.logPath, 20))
	}
	return nil
}

// imageArchive is the OCI archive of hack/image.sh, or "" when none is cached.
func imageArchive(root string) string {
	out, err := exec.Command("bash", filepath.Join(root, "hack", "image.sh"), "archive").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

const pluginImage = "localhost/shiphold-csi:e2e"

type podPlugin struct {
	k          *kube
	node       *Node
	sock       string
	lastStarts int
}

func (p *podPlugin) socket() string { return p.sock }
func (p *podPlugin) describe() string {
	return "the node plugin runs from " + pluginImage + " (hack/image.sh) in the DaemonSet of deploy/kubernetes/node.yaml"
}

// startPodPlugin imports the image and applies the DaemonSet; it returns once the plugin's
// container runs and answers on its socket.
func startPodPlugin(ctx context.Context, k *kube, node *Node, root, archive, cfgPath string, hostDirs []string, env map[string]string) (*podPlugin, error) {
	if _, err := node.ctr(ctx, "images", "import", "--base-name", "localhost/shiphold-csi", archive); err != nil {
		return nil, err
	}
	if out, err := node.ctr(ctx, "images", "ls", "-q"); err != nil || !strings.Contains(string(out), pluginImage) {
		return nil, fmt.Errorf("%s is not among the images after the import of %s (%v):\n%s", pluginImage, archive, err, out)
	}
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	cm, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "shiphold-config", "namespace": "shiphold"},
		"data":     map[string]string{"config.yaml": string(cfg)}})
	if err != nil {
		return nil, err
	}
	ds, sock, err := nodeDaemonSetForImage(root, hostDirs, env)
	if err != nil {
		return nil, err
	}
	if _, err := k.run(ctx, "apply", "-f", filepath.Join(root, "deploy", "kubernetes", "rbac-node.yaml")); err != nil {
		return nil, err
	}
	if _, err := k.apply(ctx, string(cm)+"---\n"+string(ds)); err != nil {
		return nil, err
	}
	p := &podPlugin{k: k, node: node, sock: sock}
	return p, p.waitReady(ctx, 0)
}

// nodeDaemonSetForImage is node.yaml with the changes above, and the plugin's socket on the host.
func nodeDaemonSetForImage(root string, hostDirs []string, env map[string]string) ([]byte, string, error) {
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "node.yaml"))
	if err != nil {
		return nil, "", err
	}
	var ds map[string]any
	if err := yaml.Unmarshal(data, &ds); err != nil {
		return nil, "", err
	}
	spec := dig(ds, "spec", "template", "spec")
	var sock string
	var keep []any
	for _, c := range spec["containers"].([]any) {
		c := c.(map[string]any)
		if c["name"] == "node-driver-registrar" {
			for _, e := range c["env"].([]any) {
				if e := e.(map[string]any); e["name"] == "DRIVER_REG_SOCK_PATH" {
					sock, _ = e["value"].(string)
				}
			}
		}
		if c["name"] != "shiphold-csi" {
			continue
		}
		c["image"], c["imagePullPolicy"] = pluginImage, "Never"
		delete(c, "livenessProbe")
		envs, _ := c["env"].([]any)
		for k, v := range env {
			envs = append(envs, map[string]any{"name": k, "value": v})
		}
		c["env"] = envs
		mounts, _ := c["volumeMounts"].([]any)
		for i, d := range hostDirs {
			mounts = append(mounts, map[string]any{"name": fmt.Sprintf("e2e-host-%d", i), "mountPath": d})
		}
		c["volumeMounts"] = mounts
		keep = append(keep, c)
	}
	if len(keep) != 1 || sock == "" {
		return nil, "", errors.New("node.yaml: no shiphold-csi container or no DRIVER_REG_SOCK_PATH")
	}
	spec["containers"] = keep
	vols, _ := spec["volumes"].([]any)
	for i, d := range hostDirs {
		vols = append(vols, map[string]any{"name": fmt.Sprintf("e2e-host-%d", i), "hostPath": map[string]any{"path": d, "type": "Directory"}})
	}
	spec["volumes"] = vols
	out, err := yaml.Marshal(ds)
	return out, sock, err
}

func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

type pluginPodStatus struct {
	Name   string
	Phase  string
	ID     string // containerd ID of the plugin container
	Ready  bool
	Starts int
}

func (p *podPlugin) status(ctx context.Context) (pluginPodStatus, error) {
	type pod struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Phase             string `json:"phase"`
			ContainerStatuses []struct {
				ContainerID  string `json:"containerID"`
				Ready        bool   `json:"ready"`
				RestartCount int    `json:"restartCount"`
			} `json:"containerStatuses"`
		} `json:"status"`
	}
	pods, err := jsonList[pod](ctx, p.k, "get", "pod", "-n", "shiphold", "-l", "app.kubernetes.io/name=shiphold-node")
	if err != nil {
		return pluginPodStatus{}, err
	}
	if len(pods) != 1 {
		return pluginPodStatus{}, fmt.Errorf("%d node plugin pods", len(pods))
	}
	st := pluginPodStatus{Name: pods[0].Metadata.Name, Phase: pods[0].Status.Phase}
	if cs := pods[0].Status.ContainerStatuses; len(cs) == 1 {
		st.ID = strings.TrimPrefix(cs[0].ContainerID, "containerd://")
		st.Ready, st.Starts = cs[0].Ready, cs[0].RestartCount
	}
	return st, nil
}

// waitReady waits for the plugin container (restarted at least minStarts times) to run and
// answer Probe on its socket.
func (p *podPlugin) waitReady(ctx context.Context, minStarts int) error {
	return poll(ctx, 3*time.Minute, func() (bool, string, error) {
		st, err := p.status(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		if st.Phase != "Running" || st.Starts < minStarts || !st.Ready {
			return false, fmt.Sprintf("pod %s %s, container ready %v, restarts %d%s", st.Name, st.Phase, st.Ready, st.Starts,
				lastEvent(ctx, p.k, "shiphold", st.Name)), nil
		}
		conn, err := grpc.NewClient("unix://"+p.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return false, err.Error(), nil
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := csi.NewIdentityClient(conn).Probe(cctx, &csi.ProbeRequest{}); err != nil {
			return false, "Probe: " + err.Error(), nil
		}
		return true, "", nil
	})
}

// killContainer kills every process of the plugin container with SIGKILL through containerd
// (ctr tasks kill --all: the whole container cgroup), as the runtime does when the kubelet
// stops it or the kernel's OOM killer ends it; the kubelet then restarts the container.
func (p *podPlugin) killContainer(ctx context.Context) (int, error) {
	st, err := p.status(ctx)
	if err != nil {
		return 0, err
	}
	if st.ID == "" {
		return 0, errors.New("the node plugin container has no ID")
	}
	out, _ := p.node.ctr(ctx, "tasks", "ps", st.ID)
	n := max(0, len(strings.Split(strings.TrimSpace(string(out)), "\n"))-1)
	if _, err := p.node.ctr(ctx, "tasks", "kill", "--all", "--signal", "SIGKILL", st.ID); err != nil {
		return 0, err
	}
	p.lastStarts = st.Starts
	return n, nil
}

func (p *podPlugin) restart(ctx context.Context) error {
	if err := p.waitReady(ctx, p.lastStarts+1); err != nil {
		return fmt.Errorf("the kubelet did not restart the node plugin container: %w", err)
	}
	return nil
}

func (p *podPlugin) stop(ctx context.Context) error {
	_, err := p.k.run(ctx, "delete", "daemonset", "-n", "shiphold", "shiphold-node", "--ignore-not-found", "--wait=false")
	if err != nil {
		return err
	}
	return poll(ctx, 2*time.Minute, func() (bool, string, error) {
		out, err := p.k.run(ctx, "get", "pod", "-n", "shiphold", "-l", "app.kubernetes.io/name=shiphold-node", "-o", "name")
		return err == nil && len(strings.TrimSpace(string(out))) == 0, "plugin pod still there: " + string(out), nil
	})
}
