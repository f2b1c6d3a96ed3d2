package k8s

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/mounter"
)

// The node plugin of the pod test: the shiphold-csi binary with the arguments of the
// DaemonSet in deploy/kubernetes/node.yaml, its container paths mapped to the host's, run
// as a host process in cgroups of its own (as a container runtime would put it). Killing it
// the way a runtime stops a container kills every process in those cgroups.

// pluginCgroup holds the node plugin process as a container's cgroup would.
const pluginCgroup = "shiphold-e2e-node-plugin"

// daemonSetContainer is the part of a DaemonSet the test reads.
type daemonSetContainer struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
	Env  []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
}

type daemonSet struct {
	Spec struct {
		Template struct {
			Spec struct {
				HostPID    bool                 `json:"hostPID"`
				Containers []daemonSetContainer `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// readNodeDaemonSet returns the plugin's and the registrar's containers of node.yaml.
func readNodeDaemonSet(root string) (plugin, registrar daemonSetContainer, hostPID bool, err error) {
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "node.yaml"))
	if err != nil {
		return plugin, registrar, false, err
	}
	var ds daemonSet
	if err := yaml.Unmarshal(data, &ds); err != nil {
		return plugin, registrar, false, err
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		switch c.Name {
		case "shiphold-csi":
			plugin = c
		case "node-driver-registrar":
			registrar = c
		}
	}
	if plugin.Name == "" || registrar.Name == "" {
		return plugin, registrar, false, errors.New("node.yaml: no shiphold-csi or node-driver-registrar container")
	}
	return plugin, registrar, ds.Spec.Template.Spec.HostPID, nil
}

// envValue is the literal value of a container's env var.
func envValue(c daemonSetContainer, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// nodePluginProc is the running node plugin.
type nodePluginProc struct {
	bin, logPath string
	args, env    []string
	cg           *mounter.DaemonCgroup
	proc         *process
	Sock         string // host path of the plugin's socket
	MetricsURL   string
}

// newNodePlugin maps the DaemonSet's arguments to the host: /csi is the registrar's
// DRIVER_REG_SOCK_PATH directory, /etc/shiphold/config.yaml is cfgPath, the metrics port is
// a free one on loopback, $(NODE_NAME) is the node.
func newNodePlugin(root, bin, cfgPath, logPath string, env []string) (*nodePluginProc, error) {
	plugin, registrar, hostPID, err := readNodeDaemonSet(root)
	if err != nil {
		return nil, err
	}
	if !hostPID {
		return nil, errors.New("node.yaml: the node plugin needs hostPID: true (it finds and fences its mount daemons in the host's /proc)")
	}
	sock := envValue(registrar, "DRIVER_REG_SOCK_PATH")
	if sock == "" {
		return nil, errors.New("node.yaml: the registrar has no DRIVER_REG_SOCK_PATH")
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	p := &nodePluginProc{bin: bin, logPath: logPath, Sock: sock, env: append(env, "NODE_NAME="+NodeName),
		MetricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0]),
		cg:         &mounter.DaemonCgroup{Root: "/sys/fs/cgroup", Name: pluginCgroup}}
	for _, a := range plugin.Args {
		a = strings.ReplaceAll(a, "$(NODE_NAME)", NodeName)
		switch {
		case a == "--endpoint=unix:///csi/csi.sock":
			a = "--endpoint=unix://" + sock
		case strings.HasPrefix(a, "--config="):
			a = "--config=" + cfgPath
		case strings.HasPrefix(a, "--metrics-address="):
			a = fmt.Sprintf("--metrics-address=127.0.0.1:%d", ports[0])
		case strings.HasPrefix(a, "--v="):
			a = "--v=4"
		}
		p.args = append(p.args, a)
	}
	// e.g. --daemon-cgroup= to see plugin-restart fail with the daemons in the plugin's cgroup
	p.args = append(p.args, strings.Fields(os.Getenv("SHIPHOLD_E2E_PLUGIN_ARGS"))...)
	return p, nil
}

// start runs the plugin inside its cgroups: a shell joins them, then execs the plugin.
func (p *nodePluginProc) start() error {
	procs, err := p.cg.Ensure()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.Sock), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	script := `for f in ` + strings.Join(procs, " ") + `; do echo $$ >"$f" || exit 125; done; exec "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, "node-plugin", p.bin}, p.args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return err
	}
	p.proc = &process{name: "shiphold-csi node", cmd: cmd, logPath: p.logPath, done: make(chan struct{})}
	go func() { p.proc.err = cmd.Wait(); close(p.proc.done) }()
	return nil
}

// killContainer kills every process in the plugin's cgroups with SIGKILL, as a runtime does
// when it stops a container, and waits until none is left.
func (p *nodePluginProc) killContainer(ctx context.Context) (int, error) {
	killed := 0
	err := pollUntil(ctx, 30*time.Second, func() (bool, string) {
		pids, err := p.cg.PIDs()
		if err != nil {
			return false, err.Error()
		}
		if len(pids) == 0 {
			return true, ""
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		return false, fmt.Sprintf("pids %v still in %s", pids, pluginCgroup)
	})
	if p.proc != nil {
		select {
		case <-p.proc.done:
		case <-time.After(10 * time.Second):
			err = errors.Join(err, errors.New("the plugin process did not exit after SIGKILL"))
		}
	}
	return killed, err
}

func (p *nodePluginProc) running() bool { return p.proc != nil && p.proc.running() }

// stop ends the plugin: SIGTERM, then the container kill.
func (p *nodePluginProc) stop(ctx context.Context) error {
	if p.running() {
		_ = p.proc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.proc.done:
		case <-time.After(10 * time.Second):
		}
	}
	_, err := p.killContainer(ctx)
	return err
}
