// Package fault runs the real shiphold-csi binary as a separate process against a private
// Ceph cluster and freezes Ceph daemons under it mid-burst: a crash shows as a dead process,
// a leak as storage objects left after the CO-style retries, and recovery as requests served
// again by the same process.
package fault

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) { harness.Main(m) }

// pluginBinary builds ./cmd/shiphold-csi once per test process, as `make build` would.
func pluginBinary(t testing.TB) string {
	t.Helper()
	return harness.Binary(t, "shiphold-csi")
}

// plugin is a shiphold-csi controller process; when it dies, supervise restarts it as a
// kubelet would and counts the crash.
type plugin struct {
	t      testing.TB
	bin    string
	config string
	sock   string
	logDir string

	mu      sync.Mutex
	cmd     *exec.Cmd
	starts  int
	crashes []string // exit status and log tail of each unexpected exit
	stopped bool
	exited  chan struct{}

	conn *grpc.ClientConn
}

// startPlugin writes cfg and runs the plugin on a unix socket until the test ends.
func startPlugin(t testing.TB, cfg *config.Config) *plugin {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &plugin{t: t, bin: pluginBinary(t), config: cfgPath, sock: filepath.Join(dir, "csi.sock"), logDir: dir}
	p.start()
	conn, err := grpc.NewClient("unix://"+p.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p.conn = conn
	t.Cleanup(p.stop)
	return p
}

func (p *plugin) logPath(n int) string {
	return filepath.Join(p.logDir, fmt.Sprintf("plugin-%d.log", n))
}

func (p *plugin) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	log, err := os.Create(p.logPath(p.starts))
	if err != nil {
		p.t.Fatal(err)
	}
	os.Remove(p.sock)
	cmd := exec.Command(p.bin, "--mode", "controller", "--endpoint", "unix://"+p.sock, "--config", p.config, "-v", "2")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.bin, err)
	}
	p.cmd = cmd
	p.exited = make(chan struct{})
	go p.supervise(cmd, log, p.starts, p.exited)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(p.sock); err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("plugin did not listen on %s; log:\n%s", p.sock, tailFile(p.logPath(p.starts), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// supervise waits for the process; an exit the test did not ask for is a crash.
func (p *plugin) supervise(cmd *exec.Cmd, log *os.File, n int, exited chan struct{}) {
	err := cmd.Wait()
	log.Close()
	close(exited)
	p.mu.Lock()
	stopped := p.stopped
	if !stopped {
		p.crashes = append(p.crashes, fmt.Sprintf("run %d exited: %v\n%s", n, err, tailFile(p.logPath(n), 40)))
	}
	p.mu.Unlock()
	if !stopped {
		p.start()
	}
}

func (p *plugin) crashCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.crashes)
}

func (p *plugin) crashReports() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.crashes, "\n---\n")
}

// pid is the current process's id, so a test can see it is the same process later.
func (p *plugin) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

func (p *plugin) stop() {
	defer p.keepLogs()
	p.mu.Lock()
	p.stopped = true
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// keepLogs copies the plugin's logs to $SHIPHOLD_FAULT_LOGDIR, when set, for a post mortem.
func (p *plugin) keepLogs() {
	dir := os.Getenv("SHIPHOLD_FAULT_LOGDIR")
	if dir == "" {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(p.t.Name())
	for i := 1; i <= p.starts; i++ {
		if b, err := os.ReadFile(p.logPath(i)); err == nil {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, i)), b, 0o644)
		}
	}
}

func (p *plugin) controller() csi.ControllerClient { return csi.NewControllerClient(p.conn) }

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
