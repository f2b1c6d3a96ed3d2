// Package k8s starts a real, throwaway Kubernetes control plane on loopback for end-to-end
// tests of shiphold: etcd, kube-apiserver, kube-controller-manager, the snapshot CRDs and
// snapshot-controller, and the CSI controller sidecars pointed at a CSI unix socket. The
// binaries come from hack/k8s-tools.sh (built from the Go module proxy, cached outside the
// repo). Everything runs as child processes in their own process groups and Stop ends them
// all, in the order that shuts down fastest (sidecars first, etcd last).
package k8s

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

// Tool names, as hack/k8s-tools.sh knows them.
const (
	ToolEtcd               = "etcd"
	ToolAPIServer          = "kube-apiserver"
	ToolControllerManager  = "kube-controller-manager"
	ToolProvisioner        = "csi-provisioner"
	ToolAttacher           = "csi-attacher"
	ToolResizer            = "csi-resizer"
	ToolSnapshotter        = "csi-snapshotter"
	ToolSnapshotController = "snapshot-controller"
	ToolSnapshotCRDs       = "snapshot-crds"
	ToolKubectl            = "kubectl"
	ToolScheduler          = "kube-scheduler"
	ToolKubelet            = "kubelet"
	ToolRegistrar          = "node-driver-registrar"
)

// AllSidecars are the controller sidecars of deploy/kubernetes/controller.yaml.
var AllSidecars = []string{ToolProvisioner, ToolAttacher, ToolResizer, ToolSnapshotter}

// Options configure Start. The zero value starts the control plane without sidecars.
type Options struct {
	// RepoRoot holds hack/k8s-tools.sh; default: found upwards from the working directory.
	RepoRoot string
	// WorkDir receives data, certificates, kubeconfig and one log file per process;
	// default: a new temporary directory, removed by Stop unless KeepWorkDir.
	WorkDir     string
	KeepWorkDir bool
	// CSIAddress is the CSI unix socket the sidecars talk to (a path, or unix:///path).
	// Empty: no sidecars.
	CSIAddress string
	// Sidecars to start when CSIAddress is set; default AllSidecars.
	Sidecars []string
	// SkipSnapshots leaves out the snapshot CRDs and snapshot-controller.
	SkipSnapshots bool
	// Log receives the harness's progress lines; default io.Discard.
	Log io.Writer
	// StartTimeout bounds each component's readiness wait; default 60 s.
	StartTimeout time.Duration
	// Scheduler starts kube-scheduler (pods and DaemonSets need it; StartNode adds a node).
	Scheduler bool
}

// Cluster is a running control plane. Stop it (t.Cleanup(c.Stop)) even when Start fails
// half-way: Start stops what it started before it returns an error.
type Cluster struct {
	Dir        string // work directory
	Kubeconfig string // admin kubeconfig (token auth, TLS not verified)
	Server     string // https://127.0.0.1:PORT
	Token      string // bearer token of the system:masters user "admin"
	EtcdURL    string

	opts  Options
	tools map[string]string
	log   io.Writer

	mu    sync.Mutex
	procs []*process // in start order
}

type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// Start brings the control plane up and returns once the API server is ready (and, with
// snapshots, the snapshot CRDs are established).
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	if opts.RepoRoot == "" {
		if opts.RepoRoot, err = findRepoRoot(); err != nil {
			return nil, err
		}
	}
	tools, err := ToolPaths(ctx, opts.RepoRoot)
	if err != nil {
		return nil, err
	}
	dir := opts.WorkDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "shiphold-k8s-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, opts: opts, tools: tools, log: opts.Log}
	defer func() {
		if err != nil {
			c.logf("start failed: %v; stopping what started (logs in %s)", err, dir)
			_ = c.Stop()
			c = nil
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return c, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	c.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	if err := c.writeCredentials(); err != nil {
		return c, err
	}

	// etcd
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	if err := c.spawn(ctx, ToolEtcd,
		"--name=shiphold-e2e", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+c.EtcdURL, "--advertise-client-urls="+c.EtcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=shiphold-e2e="+peerURL,
		"--log-level=warn", "--quota-backend-bytes=2147483648", "--unsafe-no-fsync",
	); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, ToolEtcd, c.EtcdURL+"/health", false, func(b []byte) bool {
		return bytes.Contains(b, []byte(`"health":"true"`))
	}); err != nil {
		return c, err
	}

	// kube-apiserver
	if err := c.spawn(ctx, ToolAPIServer,
		"--etcd-servers="+c.EtcdURL,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--v=1",
	); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, ToolAPIServer, c.Server+"/readyz", true, func(b []byte) bool {
		return strings.TrimSpace(string(b)) == "ok"
	}); err != nil {
		return c, err
	}

	// kube-controller-manager: binds PVCs to the PVs the provisioner creates
	if err := c.spawn(ctx, ToolControllerManager,
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=0",
		"--service-account-private-key-file="+filepath.Join(dir, "sa.key"),
		"--use-service-account-credentials=false",
		"--v=1",
	); err != nil {
		return c, err
	}

	if opts.Scheduler {
		if err := c.spawn(ctx, ToolScheduler, "--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
			"--bind-address=127.0.0.1", "--secure-port=0", "--v=1"); err != nil {
			return c, err
		}
	}

	if !opts.SkipSnapshots {
		if _, err := c.Kubectl(ctx, "apply", "--server-side", "-f", tools[ToolSnapshotCRDs]); err != nil {
			return c, fmt.Errorf("snapshot CRDs: %w", err)
		}
		if _, err := c.Kubectl(ctx, "wait", "--for=condition=established", "--timeout=60s",
			"crd/volumesnapshotclasses.snapshot.storage.k8s.io",
			"crd/volumesnapshotcontents.snapshot.storage.k8s.io",
			"crd/volumesnapshots.snapshot.storage.k8s.io"); err != nil {
			return c, fmt.Errorf("snapshot CRDs: %w", err)
		}
		if err := c.spawn(ctx, ToolSnapshotController,
			"--kubeconfig="+c.Kubeconfig, "--leader-election=false", "--v=2"); err != nil {
			return c, err
		}
	}

	if opts.CSIAddress != "" {
		sidecars := opts.Sidecars
		if len(sidecars) == 0 {
			sidecars = AllSidecars
		}
		if err := c.StartSidecars(ctx, opts.CSIAddress, sidecars...); err != nil {
			return c, err
		}
	}
	return c, nil
}

// SidecarArgs are the arguments the harness gives each sidecar beyond those of its container
// in deploy/kubernetes/controller.yaml (DeploySidecarArgs): the flags the e2e runs and
// measures are the ones users deploy. --csi-address, --kubeconfig and --leader-election=false
// come from StartSidecars.
var SidecarArgs = map[string][]string{
	ToolProvisioner: {"--v=3"},
	ToolAttacher:    {"--v=3"},
	ToolResizer:     {"--v=3"},
	ToolSnapshotter: {"--v=3"},
}

// harnessSidecarFlags are the deploy flags the harness sets itself: the socket, a single
// instance without a lease, and a debug verbosity.
var harnessSidecarFlags = []string{"--csi-address", "--leader-election", "--v"}

// DeploySidecarArgs reads the args of each CSI sidecar container of
// deploy/kubernetes/controller.yaml, without the flags the harness sets itself.
func DeploySidecarArgs(root string) (map[string][]string, error) {
	path := filepath.Join(root, "deploy", "kubernetes", "controller.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name string   `json:"name"`
						Args []string `json:"args"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string][]string{}
	for _, c := range d.Spec.Template.Spec.Containers {
		if _, ok := SidecarArgs[c.Name]; !ok {
			continue
		}
		args := []string{}
		for _, a := range c.Args {
			if !slices.Contains(harnessSidecarFlags, strings.SplitN(a, "=", 2)[0]) {
				args = append(args, a)
			}
		}
		out[c.Name] = args
	}
	for _, s := range AllSidecars {
		if _, ok := out[s]; !ok {
			return nil, fmt.Errorf("%s: no %s container", path, s)
		}
	}
	return out, nil
}

// StartSidecars starts the named sidecars against the CSI socket at csiAddress, with the
// args of deploy/kubernetes/controller.yaml.
func (c *Cluster) StartSidecars(ctx context.Context, csiAddress string, sidecars ...string) error {
	addr := strings.TrimPrefix(csiAddress, "unix://")
	deployed, err := DeploySidecarArgs(c.opts.RepoRoot)
	if err != nil {
		return err
	}
	for _, s := range sidecars {
		extra, ok := SidecarArgs[s]
		if !ok {
			return fmt.Errorf("unknown sidecar %q", s)
		}
		args := append([]string{"--csi-address=" + addr, "--kubeconfig=" + c.Kubeconfig, "--leader-election=false"}, deployed[s]...)
		if err := c.spawn(ctx, s, append(args, extra...)...); err != nil {
			return err
		}
	}
	return nil
}

// Kubectl runs the cached kubectl of the control plane's version (or $KUBECTL) against the
// cluster and returns its stdout; a failure carries stderr.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = c.tools[ToolKubectl]
	}
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	c.logf("kubectl %s", strings.Join(args, " "))
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, filterSkewWarning(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Running reports whether the named component is still running (false if never started).
func (c *Cluster) Running(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.name == name {
			select {
			case <-p.done:
				return false
			default:
				return true
			}
		}
	}
	return false
}

// LogPath is the file that holds a component's output.
func (c *Cluster) LogPath(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }

// Stop ends every process, newest first (SIGTERM, then SIGKILL to the process group after
// 10 s), and removes the work directory unless KeepWorkDir. Safe to call more than once.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
		c.logf("stopped %s", procs[i].name)
	}
	if !c.opts.KeepWorkDir && c.opts.WorkDir == "" && c.Dir != "" && len(errs) == 0 {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// --- internals ------------------------------------------------------------------------

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "[k8s-harness %s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (c *Cluster) spawn(ctx context.Context, name string, args ...string) error {
	bin, ok := c.tools[name]
	if !ok {
		return fmt.Errorf("%s: not built; run hack/k8s-tools.sh build", name)
	}
	return c.spawnBin(ctx, name, bin, nil, args...)
}

// spawnBin starts bin as component name, logging to LogPath(name), with env added.
func (c *Cluster) spawnBin(ctx context.Context, name, bin string, env []string, args ...string) error {
	if err := os.MkdirAll(filepath.Join(c.Dir, "logs"), 0o755); err != nil {
		return err
	}
	logPath := c.LogPath(name)
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	// Not CommandContext: ctx bounds the start, not the life of the cluster.
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.Dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	// Own process group, so Stop reaches grandchildren; Pdeathsig is the backstop when the
	// test binary itself dies without running Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.logf("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	return ctx.Err()
}

func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
	}
}

// waitHTTP polls url until ok(body) on a 200, the component exits, or the timeout.
func (c *Cluster) waitHTTP(ctx context.Context, name, url string, auth bool, ok func([]byte) bool) error {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // self-signed, loopback
	}
	deadline := time.Now().Add(c.opts.StartTimeout)
	start := time.Now()
	var last string
	for time.Now().Before(deadline) {
		if !c.Running(name) {
			return fmt.Errorf("%s exited during start:\n%s", name, tail(c.LogPath(name), 30))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ok(body) {
				c.logf("%s ready in %s", name, time.Since(start).Round(time.Millisecond))
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s (last: %s):\n%s", name, c.opts.StartTimeout, last, tail(c.LogPath(name), 30))
}

// writeCredentials writes the service-account key pair, the token file and the kubeconfig.
func (c *Cluster) writeCredentials() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "sa.key"),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "sa.pub"),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	c.Token = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"),
		[]byte(c.Token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: shiphold-e2e
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: shiphold-e2e
  context:
    cluster: shiphold-e2e
    user: admin
current-context: shiphold-e2e
`, c.Server, c.Token)
	return os.WriteFile(c.Kubeconfig, []byte(kc), 0o600)
}

// ToolPaths asks hack/k8s-tools.sh where the cached tools are. A tool not built is absent.
func ToolPaths(ctx context.Context, repoRoot string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "hack", "k8s-tools.sh"), "path")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	tools := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			tools[f[0]] = f[1]
		}
	}
	if len(tools) == 0 && err != nil {
		return nil, fmt.Errorf("hack/k8s-tools.sh path: %w: %s", err, stderr.String())
	}
	return tools, nil
}

// MissingTools lists the tools Start needs for opts that are not built yet.
func MissingTools(ctx context.Context, repoRoot string, opts Options) ([]string, error) {
	tools, err := ToolPaths(ctx, repoRoot)
	if err != nil {
		return nil, err
	}
	need := []string{ToolEtcd, ToolAPIServer, ToolControllerManager}
	if os.Getenv("KUBECTL") == "" {
		need = append(need, ToolKubectl)
	}
	if !opts.SkipSnapshots {
		need = append(need, ToolSnapshotCRDs, ToolSnapshotController)
	}
	if opts.Scheduler {
		need = append(need, ToolScheduler)
	}
	if opts.CSIAddress != "" {
		if len(opts.Sidecars) == 0 {
			need = append(need, AllSidecars...)
		} else {
			need = append(need, opts.Sidecars...)
		}
	}
	var missing []string
	for _, n := range need {
		if _, ok := tools[n]; !ok {
			missing = append(missing, n)
		}
	}
	return missing, nil
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "k8s-tools.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no hack/k8s-tools.sh above the working directory; set Options.RepoRoot")
		}
		dir = parent
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// filterSkewWarning drops kubectl's version-skew warning (a $KUBECTL of another version).
func filterSkewWarning(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "version difference") && strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
