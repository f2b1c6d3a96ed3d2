// Package migratetest runs shipholdctl migrate, the real binary, between real backends: the
// OneFS simulator's directories read over NFSv3 through nfs-ganesha (no mount), CephFS and
// RBD on the local Ceph. Equality is proven by treecheck's own walker on staged mounts.
package migratetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/onefssim"
)

// Ports of this package's ganesha, apart from every other test's.
const (
	nfsPort = "12349"
	mntPort = "12348"
)

var shipholdctl string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shipholdctl-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shipholdctl = filepath.Join(dir, "shipholdctl")
	// testhooks: the snapshot test changes the source between its snapshot and the first read.
	build := exec.Command("go", "build", "-tags", "pacific,testhooks", "-o", shipholdctl, "../../cmd/shipholdctl")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build shipholdctl: %v\n%s", err, out)
		os.Exit(1)
	}
	// The subtests of TestMigrate wait on Ceph and the NFS server, not the CPU: all at once
	// unless -parallel says otherwise (its default is GOMAXPROCS, 2 on the CI machine).
	flag.Parse()
	if !flagSet("test.parallel") {
		flag.Set("test.parallel", "12")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// shared is the package's one stack, built once for all its tests: ganesha, the OneFS
// simulator, the CephFS and RBD backends and their config file.
type shared struct {
	cfg     *config.Config
	cfgFile string
	b       *registry.Backends
	sim     *harness.OneFS
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// stack is one test's view of the shared stack, with a tenant of its own (so tests can run
// in parallel without seeing each other's volumes).
type stack struct {
	*shared
	t      *testing.T
	tenant string
	runs   int // the bench's shipholdctl runs, each into a tenant of its own
}

const (
	isilonBackend = "mig-isilon"
	cephfsBackend = "mig-cephfs"
	rbdBackend    = "mig-rbd"
)

// newShared starts the stack; t's cleanups stop it, after every subtest of t has ended.
func newShared(t *testing.T) *shared {
	_, errG := exec.LookPath("ganesha.nfsd")
	harness.Require(t, "root and nfs-ganesha", os.Geteuid() == 0 && errG == nil, "run as root; apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind")
	harness.LocalCeph(t)
	nfsDir := t.TempDir()
	nfsServer(t, "start", nfsDir)
	t.Cleanup(func() { nfsServer(t, "stop", nfsDir) })
	sim := harness.StartOneFSWith(t, func(o *onefssim.Options) {
		o.Ganesha = &onefssim.GaneshaOptions{ExportsFile: filepath.Join(nfsDir, "exports.conf"), PidFile: filepath.Join(nfsDir, "ganesha.pid")}
	})
	if err := os.Chmod(sim.Root, 0o755); err != nil { // ganesha's VFS FSAL walks the path
		t.Fatal(err)
	}
	cephfsBe := harness.CephFSBackend(t, cephfsBackend)
	cephfsBe.Section.(*cephfs.Config).Mounter = "fuse"
	rbdBe := harness.RBDBackend(t, rbdBackend)
	sh := &shared{sim: sim, cfg: &config.Config{Backends: []config.Backend{sim.Backend(t, isilonBackend), cephfsBe, rbdBe}}}
	data, err := yaml.Marshal(sh.cfg)
	if err != nil {
		t.Fatal(err)
	}
	sh.cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(sh.cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if sh.b, err = registry.Open(sh.cfg, true, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.b.Close)
	return sh
}

// stack gives test t a new tenant on the shared stack.
func (sh *shared) stack(t *testing.T) *stack {
	b := make([]byte, 3)
	rand.Read(b)
	return &stack{shared: sh, t: t, tenant: "mig-" + hex.EncodeToString(b)}
}

// newStack is a stack of t's own (the bench's, which runs alone).
func newStack(t *testing.T) *stack { return newShared(t).stack(t) }

func nfsServer(t *testing.T, args ...string) {
	t.Helper()
	script, _ := filepath.Abs("../../hack/nfs-server.sh")
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), "NFS_PORT="+nfsPort, "MNT_PORT="+mntPort)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nfs-server.sh %v: %v\n%s", args, err, out)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// volume creates a volume of the stack's tenant, deleted when the test ends.
func (s *stack) volume(backendName, name string, size int64) *backend.Volume {
	s.t.Helper()
	v, err := s.b.Controllers[backendName].CreateVolume(ctxT(s.t), &backend.VolumeRequest{Name: name, Tenant: s.tenant, RequiredBytes: size, MultiNode: backendName != rbdBackend})
	if err != nil {
		s.t.Fatalf("create %s on %s: %v", name, backendName, err)
	}
	s.t.Cleanup(func() { s.b.Controllers[backendName].DeleteVolume(context.Background(), v.ID, nil) })
	return v
}

// isilonDir is where the simulator keeps an Isilon volume's data.
func (s *stack) isilonDir(v *backend.Volume) string {
	return filepath.Join(s.sim.Root, strings.TrimPrefix(v.Context["exportPath"], "/ifs/"))
}

// stage mounts a Ceph volume with the node plugin's code (ceph-fuse, rbd-fuse and a loop
// device here) and returns its directory; unstage undoes it.
func (s *stack) stage(v *backend.Volume, readOnly bool) (string, func()) {
	s.t.Helper()
	st := s.b.Stagers[v.ID.Backend]
	staging := filepath.Join(s.t.TempDir(), "staging")
	vc := map[string]string{}
	for k, val := range v.Context {
		vc[k] = val
	}
	if v.ID.Backend == cephfsBackend {
		// ceph-fuse hides POSIX ACLs unless told to serve them (the class's fuseMountOptions).
		vc["fuseMountOptions"] = "client_acl_type=posix_acl"
		if vc["rootPath"] == "" {
			// A new volume's context names no data directory (a node gets it from
			// ControllerPublishVolume); the controller's GetVolume does.
			got, err := s.b.Controllers[v.ID.Backend].GetVolume(ctxT(s.t), v.ID, nil)
			if err != nil {
				s.t.Fatalf("get %s: %v", v.ID, err)
			}
			vc["rootPath"] = got.Context["rootPath"]
		}
	}
	req := &backend.StageRequest{ID: v.ID, StagingPath: staging, Context: vc}
	if readOnly {
		req.MountFlags = []string{"ro"}
	}
	if err := st.StageVolume(ctxT(s.t), req); err != nil {
		s.t.Fatalf("stage %s: %v", v.ID, err)
	}
	dir, _, err := st.PublishSource(ctxT(s.t), v.ID, staging)
	if err != nil {
		s.t.Fatal(err)
	}
	done := false
	unstage := func() {
		if !done {
			done = true
			if err := st.UnstageVolume(context.Background(), v.ID, staging); err != nil {
				s.t.Errorf("unstage %s: %v", v.ID, err)
			}
		}
	}
	s.t.Cleanup(unstage)
	return dir, unstage
}

// result is the JSON line migrate ends with off a terminal.
type result struct {
	Event  string         `json:"event"`
	Target string         `json:"target"`
	Error  string         `json:"error"`
	Result migrate.Result `json:"result"`
}

// run is one shipholdctl invocation.
type run struct {
	code   int
	stdout string
	stderr string
	res    *result
}

func (s *stack) args(source string, stateDir string, extra ...string) []string {
	a := []string{"migrate", "--config", s.cfgFile, "--state-dir", stateDir, "--node-address", "127.0.0.1",
		"--nfs-port", nfsPort, "--mount-port", mntPort, "--progress", "json"}
	if strings.HasPrefix(source, "v1:") {
		a = append(a, source)
	} else {
		a = append(a, "--from", source)
	}
	return append(a, extra...)
}

// migrate runs shipholdctl to completion.
func (s *stack) migrate(args ...string) *run {
	s.t.Helper()
	return s.migrateBin(shipholdctl, args...)
}

// migrateBin runs a shipholdctl binary to completion.
func (s *stack) migrateBin(bin string, args ...string) *run {
	s.t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := &run{stdout: out.String(), stderr: errb.String(), res: lastResult(out.String())}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// migrateKilled starts shipholdctl and kills it with SIGKILL d after it reports copying
// (unless it ended first).
func (s *stack) migrateKilled(d time.Duration, args ...string) (killed bool) {
	s.t.Helper()
	cmd := exec.Command(shipholdctl, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	copying := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), `"phase":"copy"`) {
				seen = true
				close(copying)
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return false
	case <-copying:
	}
	select {
	case <-done:
		return false
	case <-time.After(d):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return true
	}
}

func lastResult(stdout string) *result {
	var last *result
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r result
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Event == "result" {
			last = &r
		}
	}
	return last
}

func (r *run) must(t *testing.T, what string) *result {
	t.Helper()
	if r.code != 0 || r.res == nil {
		var diffs []string
		if r.res != nil {
			for _, d := range r.res.Result.Differences[:min(len(r.res.Result.Differences), 30)] {
				diffs = append(diffs, d.String())
			}
		}
		t.Fatalf("%s: exit %d\nstderr:\n%s\ndifferences:\n%s", what, r.code, tail(r.stderr, 30), strings.Join(diffs, "\n"))
	}
	return r.res
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
