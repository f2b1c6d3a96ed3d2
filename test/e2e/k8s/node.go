package k8s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A node for the control plane: containerd (Debian's, with runc) behind the CRI, a kubelet of
// the control plane's version, and a local busybox image, so that pods mount PVCs the way
// they do in production. Choices, because of this machine:
//   - containerd 1.6 from Debian rather than containerd v2 from its module: no build, and
//     kubelet 1.37 still serves it (it falls back to the kubelet's cgroupDriver, since 1.6
//     lacks the RuntimeConfig call; support ends with kubelet 1.38).
//   - cgroups are v1 (with a v2 "unified" mount): the kubelet refuses v1 unless told
//     failCgroupV1: false; the cgroupfs driver (no systemd here).
//   - no CNI network: pods run on the host network. containerd still wants a network
//     config to report NetworkReady, so it gets a loopback-only one.
//   - no registry: busybox-static packed into an OCI archive, imported with ctr; the sandbox
//     ("pause") image is the same busybox sleeping.
//   - this machine withholds CAP_SYS_RESOURCE, so no process may lower its OOM score:
//     containerd's restrict_oom_score_adj keeps the kubelet's requests at containerd's own.
//   - the node is named "localhost": the API server reaches a kubelet by its Hostname address
//     first, and the kubelet refuses a loopback node IP; this keeps exec and logs on loopback.

// Node names and images of the e2e node.
const (
	NodeName     = "localhost"
	BusyboxImage = "localhost/shiphold-e2e/busybox:1"
	PauseImage   = "localhost/shiphold-e2e/pause:1"
)

// NodeOptions configure StartNode.
type NodeOptions struct {
	// KubeletDir is the kubelet's --root-dir; default /var/lib/kubelet (deploy/ mounts it).
	KubeletDir string
	// Busybox is the static busybox the image is made of; default /bin/busybox.
	Busybox string
	// VolumeStatsPeriod is the kubelet's volumeStatsAggPeriod; default 10 s.
	VolumeStatsPeriod time.Duration
	// NodeStatusPeriod is the kubelet's nodeStatusUpdateFrequency; default the kubelet's
	// (10 s). A kubelet mounts an attachable volume only after a node status listed it in
	// use, so this period bounds a pod's wait for its volume.
	NodeStatusPeriod time.Duration
}

// Node is a running kubelet and containerd registered as NodeName.
type Node struct {
	Name        string
	KubeletDir  string
	KubeletPort int
	Containerd  string // containerd's socket
	c           *Cluster
	dir         string
}

// NodeTools are the commands StartNode needs besides the cached kubelet.
var NodeTools = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"}

// StartNode starts containerd and the kubelet and waits for the node to be Ready.
func (c *Cluster) StartNode(ctx context.Context, opts NodeOptions) (*Node, error) {
	if opts.KubeletDir == "" {
		opts.KubeletDir = "/var/lib/kubelet"
	}
	if opts.Busybox == "" {
		opts.Busybox = "/bin/busybox"
	}
	if opts.VolumeStatsPeriod == 0 {
		opts.VolumeStatsPeriod = 10 * time.Second
	}
	n := &Node{Name: NodeName, KubeletDir: opts.KubeletDir, c: c, dir: filepath.Join(c.Dir, "node")}
	if err := CleanStaleNode(opts.KubeletDir); err != nil {
		return nil, fmt.Errorf("leftovers of an interrupted run: %w", err)
	}
	for _, d := range []string{"containerd", "cni", "kubelet"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := n.startContainerd(ctx); err != nil {
		return n, err
	}
	if err := n.importImages(ctx, opts.Busybox); err != nil {
		return n, err
	}
	if err := n.startKubelet(ctx, opts); err != nil {
		return n, err
	}
	return n, n.waitReady(ctx, 2*time.Minute)
}

func (n *Node) startContainerd(ctx context.Context) error {
	root := filepath.Join(n.dir, "containerd")
	n.Containerd = filepath.Join(root, "containerd.sock")
	cni := filepath.Join(n.dir, "cni")
	if err := os.WriteFile(filepath.Join(cni, "10-loopback.conflist"), []byte(`{
  "cniVersion": "0.4.0",
  "name": "shiphold-e2e-loopback",
  "plugins": [{"type": "loopback"}]
}
`), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # no CAP_SYS_RESOURCE here: no OOM score below containerd's own (the kubelet asks -998)
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
`, filepath.Join(root, "root"), filepath.Join(root, "state"), n.Containerd, PauseImage, cni)
	confPath := filepath.Join(root, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := n.c.spawnBin(ctx, "containerd", "containerd", nil, "--config", confPath); err != nil {
		return err
	}
	return pollUntil(ctx, 60*time.Second, func() (bool, string) {
		if !n.c.Running("containerd") {
			return false, "exited:\n" + tail(n.c.LogPath("containerd"), 20)
		}
		out, err := n.ctr(ctx, "version")
		return err == nil, string(out) + fmt.Sprint(err)
	})
}

// ctr runs ctr against the node's containerd in the CRI's namespace.
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "ctr", append([]string{"--address", n.Containerd, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// importImages packs busybox into an OCI archive (the test image and the sandbox image) and
// imports it into containerd.
func (n *Node) importImages(ctx context.Context, busybox string) error {
	archive := filepath.Join(n.dir, "images.tar")
	if err := WriteBusyboxOCI(archive, busybox, []OCIImage{
		{Name: BusyboxImage, Cmd: []string{"/bin/sh"}},
		// The sandbox only holds the pod's namespaces; containerd stops it with SIGKILL.
		{Name: PauseImage, Entrypoint: []string{"/bin/sleep", "inf"}},
	}); err != nil {
		return err
	}
	if _, err := n.ctr(ctx, "images", "import", archive); err != nil {
		return err
	}
	out, err := n.ctr(ctx, "images", "ls", "-q")
	if err != nil {
		return err
	}
	for _, want := range []string{BusyboxImage, PauseImage} {
		if !strings.Contains(string(out), want) {
			return fmt.Errorf("ctr images import: %s is not among the images:\n%s", want, out)
		}
	}
	n.c.logf("imported %s and %s from %s", BusyboxImage, PauseImage, busybox)
	return nil
}

func (n *Node) startKubelet(ctx context.Context, opts NodeOptions) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	n.KubeletPort = ports[0]
	if err := os.MkdirAll(opts.KubeletDir, 0o750); err != nil {
		return err
	}
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (v2 only as the "unified" mount): kubelets since 1.35 refuse it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
address: 127.0.0.1
port: %[1]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]d
containerRuntimeEndpoint: unix://%[3]s
# the test scrapes /metrics and the API server proxies exec and logs, all on loopback
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
volumeStatsAggPeriod: %[4]s
syncFrequency: 10s
serializeImagePulls: false
# a shared test machine: never evict for its disk or memory
evictionHard: {memory.available: "1Mi", nodefs.available: "0%%", imagefs.available: "0%%", nodefs.inodesFree: "0%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
enableControllerAttachDetach: true
`, ports[0], ports[1], n.Containerd, opts.VolumeStatsPeriod)
	if opts.NodeStatusPeriod > 0 {
		conf += fmt.Sprintf("nodeStatusUpdateFrequency: %s\n", opts.NodeStatusPeriod)
	}
	confPath := filepath.Join(n.dir, "kubelet", "config.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	bin, ok := n.c.tools[ToolKubelet]
	if !ok {
		return fmt.Errorf("kubelet: not built; run hack/k8s-tools.sh build kubelet")
	}
	return n.c.spawnBin(ctx, ToolKubelet, bin, nil,
		"--config="+confPath, "--kubeconfig="+n.c.Kubeconfig,
		"--root-dir="+opts.KubeletDir, "--hostname-override="+NodeName, "--v=2")
}

func (n *Node) waitReady(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	err := pollUntil(ctx, timeout, func() (bool, string) {
		if !n.c.Running(ToolKubelet) {
			return false, "kubelet exited:\n" + tail(n.c.LogPath(ToolKubelet), 30)
		}
		out, err := n.c.Kubectl(ctx, "get", "node", n.Name, "-o",
			`jsonpath={range .status.conditions[?(@.type=="Ready")]}{.status} {.message}{end}`)
		if err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(string(out), "True"), string(out)
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready: %w\n%s", n.Name, err, tail(n.c.LogPath(ToolKubelet), 30))
	}
	n.c.logf("node %s Ready in %s", n.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// StartRegistrar starts node-driver-registrar for the driver socket csiSock (a host path below
// the kubelet's plugins directory), on the kubelet's plugin registration directory.
func (n *Node) StartRegistrar(ctx context.Context, csiSock string) error {
	bin, ok := n.c.tools[ToolRegistrar]
	if !ok {
		return fmt.Errorf("%s: not built; run hack/k8s-tools.sh build %s", ToolRegistrar, ToolRegistrar)
	}
	reg := filepath.Join(n.KubeletDir, "plugins_registry")
	if err := os.MkdirAll(reg, 0o750); err != nil {
		return err
	}
	return n.c.spawnBin(ctx, ToolRegistrar, bin, nil, "--csi-address="+csiSock,
		"--kubelet-registration-path="+csiSock, "--plugin-registration-path="+reg, "--v=2")
}

// Stop removes what the node leaves when pods were not deleted: the kubelet stops first (so
// nothing restarts), then every container and sandbox, then containerd and its mounts. The
// test's "deleted" step is where volumes go; what is still mounted, looped or running of one
// after that (a failed test) is removed here too, and reported as an error.
func (n *Node) Stop(ctx context.Context) error {
	if n == nil {
		return nil
	}
	var errs []error
	if err := n.c.StopComponent(ToolRegistrar); err != nil {
		errs = append(errs, err)
	}
	if err := n.c.StopComponent(ToolKubelet); err != nil {
		errs = append(errs, err)
	}
	if n.c.Running("containerd") {
		if out, err := n.ctr(ctx, "tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(string(out)) {
				_, _ = n.ctr(ctx, "tasks", "kill", "-s", "SIGKILL", id)
				_ = pollUntil(ctx, 10*time.Second, func() (bool, string) {
					_, err := n.ctr(ctx, "tasks", "rm", id)
					return err == nil, ""
				})
			}
		}
		if out, err := n.ctr(ctx, "containers", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(string(out)) {
				_, _ = n.ctr(ctx, "containers", "rm", id)
			}
		}
	}
	if err := n.c.StopComponent("containerd"); err != nil {
		errs = append(errs, err)
	}
	// overlay rootfs and shm mounts below containerd's state and root
	if err := unmountBelow(filepath.Join(n.dir, "containerd")); err != nil {
		errs = append(errs, err)
	}
	// The kubelet's iptables chains are its own leftovers, not a test's: removed quietly.
	for _, c := range kubeletChains() {
		if err := removeChain(c); err != nil {
			errs = append(errs, err)
		}
	}
	// What pods that were never deleted (a failed test) held: an error, and removed.
	if st, err := FindStaleNode(n.KubeletDir); err != nil {
		errs = append(errs, err)
	} else if !st.Empty() {
		errs = append(errs, fmt.Errorf("left on the node (removed now): %s", st), st.Clean())
	}
	return errors.Join(errs...)
}

// StaleNode is what a run left on this machine: shims of containers whose containerd
// (below a shiphold-k8s- work directory) is gone, mounts of volumes below the kubelet
// directory and of that containerd's state, loop devices on files below the kubelet
// directory and the mount daemons that served them, and the iptables chains a kubelet makes
// for other components (it needs none itself; they outlive it, KUBE-FIREWALL with a DROP rule).
type StaleNode struct {
	Shims   []int    // containerd-shim-runc-v2 PIDs (their containers' processes are children)
	Mounts  []string // mount points, deepest last
	Loops   []string // loop devices
	Daemons []int    // ceph-fuse, rbd-fuse, rbd-nbd PIDs
	Chains  []string // iptables chains a kubelet made: "<command> <table> <chain>"
}

// FindStaleNode lists what a run left below kubeletDir and of dead containerds.
func FindStaleNode(kubeletDir string) (StaleNode, error) {
	var st StaleNode
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		argv := procArgs(e.Name())
		if len(argv) == 0 {
			continue
		}
		pid, _ := strconv.Atoi(e.Name())
		switch filepath.Base(argv[0]) {
		case "containerd-shim-runc-v2":
			if sock := argAfterFlag(argv, "-address"); strings.Contains(sock, "/shiphold-k8s-") && !answers(sock) {
				st.Shims = append(st.Shims, pid)
			}
		case "ceph-fuse", "rbd-fuse", "rbd-nbd":
			if strings.Contains(strings.Join(argv, " "), kubeletDir+"/") {
				st.Daemons = append(st.Daemons, pid)
			}
		}
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && staleMount(f[4], kubeletDir) {
			st.Mounts = append(st.Mounts, f[4])
		}
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(data), kubeletDir+"/") {
			st.Loops = append(st.Loops, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	st.Chains = kubeletChains()
	return st, nil
}

// kubeletChains lists the iptables chains a kubelet made for other components (the hint and
// canary chains, KUBE-FIREWALL with its martian-packet DROP rule, jumped to from INPUT and
// OUTPUT) as "<command> <table> <chain>"; they outlive the kubelet.
func kubeletChains() []string {
	var out []string
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			rules, err := exec.Command(cmd, "-w", "5", "-t", table, "-S").Output()
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(rules), "\n") {
				if chain, ok := strings.CutPrefix(l, "-N "); ok && kubeletChain[chain] {
					out = append(out, cmd+" "+table+" "+chain)
				}
			}
		}
	}
	return out
}

var kubeletChain = map[string]bool{"KUBE-IPTABLES-HINT": true, "KUBE-KUBELET-CANARY": true, "KUBE-FIREWALL": true}

// removeChain deletes the jumps to a chain from INPUT and OUTPUT, then the chain.
func removeChain(entry string) error {
	f := strings.Fields(entry)
	cmd, table, chain := f[0], f[1], f[2]
	for _, from := range []string{"INPUT", "OUTPUT"} {
		for exec.Command(cmd, "-w", "5", "-t", table, "-D", from, "-j", chain).Run() == nil {
		}
	}
	if out, err := exec.Command(cmd, "-w", "5", "-t", table, "-F", chain).CombinedOutput(); err != nil {
		return fmt.Errorf("%s -t %s -F %s: %v: %s", cmd, table, chain, err, out)
	}
	if out, err := exec.Command(cmd, "-w", "5", "-t", table, "-X", chain).CombinedOutput(); err != nil {
		return fmt.Errorf("%s -t %s -X %s: %v: %s", cmd, table, chain, err, out)
	}
	return nil
}

// staleMount: a volume's mount below the kubelet directory, or a mount below the state of a
// test's containerd that no longer answers (container root filesystems, sandboxes' shm).
func staleMount(m, kubeletDir string) bool {
	for _, sub := range []string{"pods", "plugins/kubernetes.io/csi"} {
		if strings.HasPrefix(m, filepath.Join(kubeletDir, sub)+"/") {
			return true
		}
	}
	i := strings.Index(m, "/node/containerd/")
	return i > 0 && strings.Contains(m[:i], "/shiphold-k8s-") && !answers(m[:i]+"/node/containerd/containerd.sock")
}

func argAfterFlag(argv []string, flag string) string {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1]
		}
	}
	return ""
}

// answers reports whether something listens on the unix socket sock.
func answers(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Empty reports whether nothing was left.
func (st StaleNode) Empty() bool {
	return len(st.Shims)+len(st.Mounts)+len(st.Loops)+len(st.Daemons)+len(st.Chains) == 0
}

func (st StaleNode) String() string {
	var parts []string
	for _, p := range st.Shims {
		parts = append(parts, fmt.Sprintf("shim %d: %s", p, strings.Join(procArgs(strconv.Itoa(p)), " ")))
	}
	for _, m := range st.Mounts {
		parts = append(parts, "mount "+m)
	}
	for _, l := range st.Loops {
		parts = append(parts, "loop device "+l)
	}
	for _, p := range st.Daemons {
		parts = append(parts, fmt.Sprintf("mount daemon %d: %s", p, strings.Join(procArgs(strconv.Itoa(p)), " ")))
	}
	for _, c := range st.Chains {
		parts = append(parts, "iptables chain "+c)
	}
	return strings.Join(parts, "; ")
}

// Clean removes it: shims with their containers, mounts (deepest first, lazily), loop
// devices, the mount daemons, then the kubelet's iptables chains.
func (st StaleNode) Clean() error {
	for _, pid := range st.Shims {
		killTree(pid)
	}
	var errs []error
	sorted := append([]string(nil), st.Mounts...)
	sort.Sort(sort.Reverse(sort.StringSlice(sorted)))
	for _, m := range sorted {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, dev := range st.Loops {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("losetup -d %s: %v: %s", dev, err, out))
		}
	}
	for _, pid := range st.Daemons {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, c := range st.Chains {
		errs = append(errs, removeChain(c))
	}
	return errors.Join(errs...)
}

// CleanStaleNode removes what an interrupted run left on this machine (FindStaleNode).
func CleanStaleNode(kubeletDir string) error {
	st, err := FindStaleNode(kubeletDir)
	if err != nil {
		return err
	}
	return st.Clean()
}

func procArgs(pid string) []string {
	data, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// killTree kills a process and its children (a shim and its containers' processes).
func killTree(pid int) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, c := range strings.Fields(string(data)) {
		if cp, err := strconv.Atoi(c); err == nil {
			killTree(cp)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// unmountBelow lazily unmounts every mount at or below dir, deepest first.
func unmountBelow(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var below []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			below = append(below, f[4])
		}
	}
	var errs []error
	for i := len(below) - 1; i >= 0; i-- {
		if err := syscall.Unmount(below[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", below[i], err))
		}
	}
	return errors.Join(errs...)
}

// StopComponent stops one named process of the cluster (no error if it is not running).
func (c *Cluster) StopComponent(name string) error {
	c.mu.Lock()
	var keep []*process
	var stop []*process
	for _, p := range c.procs {
		if p.name == name {
			stop = append(stop, p)
		} else {
			keep = append(keep, p)
		}
	}
	c.procs = keep
	c.mu.Unlock()
	var errs []error
	for _, p := range stop {
		errs = append(errs, p.stop(10*time.Second))
		c.logf("stopped %s", name)
	}
	return errors.Join(errs...)
}

// pollUntil calls f every 250 ms until it reports done or the timeout; the error carries f's
// last status.
func pollUntil(ctx context.Context, timeout time.Duration, f func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		done, st := f()
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
		case <-time.After(250 * time.Millisecond):
		}
	}
}
