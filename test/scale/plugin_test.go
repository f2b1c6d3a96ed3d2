package scale

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// plugin is the real shiphold-csi binary serving the controller on a unix socket, in a
// process of its own, so that its memory is the plugin's alone.
type plugin struct {
	cmd  *exec.Cmd
	conn *grpc.ClientConn
	log  string
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) { harness.Main(m) }

// startPlugin builds cmd/shiphold-csi and serves cfg in controller mode until the test ends;
// args are further flags.
func startPlugin(t *testing.T, cfg config.Config, args ...string) *plugin {
	t.Helper()
	dir := t.TempDir()
	bin := harness.Binary(t, "shiphold-csi")
	cfgPath := filepath.Join(dir, "config.yaml")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	p := &plugin{log: filepath.Join(dir, "plugin.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, append([]string{"--mode", "controller", "--endpoint", "unix://" + sock, "--config", cfgPath,
		"--probe-interval", "0", "--v", "1"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t); logf.Close() })
	waitForSocket(t, p, sock)
	if p.conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitForSocket(t *testing.T, p *plugin, sock string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin did not listen on %s in 30s; its log:\n%s", sock, tail(p.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *plugin) stop(t *testing.T) {
	if p.conn != nil {
		p.conn.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		t.Logf("the plugin did not stop on SIGTERM in 15s; killed")
	}
}

func (p *plugin) controller() csi.ControllerClient { return csi.NewControllerClient(p.conn) }

// memoryMB reads a field of /proc/<pid>/status in MiB: VmRSS is the resident set now,
// VmHWM its peak since the process started.
func (p *plugin) memoryMB(t *testing.T, field string) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the plugin's memory: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				t.Fatalf("%s in /proc/%d/status: %q", field, p.cmd.Process.Pid, l)
			}
			return kb / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
	return 0
}

// residentByFile sums the Rss of /proc/<pid>/smaps per file-backed mapping kind: "binary"
// (the plugin's own executable), "libs" (shared libraries: librados, libcephfs, libstdc++ ...)
// and "pmd" (file pages mapped in 2 MiB pages, FilePmdMapped), in MiB.
func (p *plugin) residentByFile(t *testing.T) map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the plugin's smaps: %v", err)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.cmd.Process.Pid))
	out := map[string]float64{}
	kind := ""
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			kind = ""
			if len(f) >= 6 && f[5] == exe {
				kind = "binary"
			} else if len(f) >= 6 && strings.Contains(f[5], ".so") {
				kind = "libs"
			}
		case len(f) == 3 && f[0] == "Rss:" && kind != "":
			kb, _ := strconv.ParseFloat(f[1], 64)
			out[kind] += kb / 1024
		case len(f) == 3 && f[0] == "FilePmdMapped:":
			kb, _ := strconv.ParseFloat(f[1], 64)
			out["pmd"] += kb / 1024
		}
	}
	return out
}

// peakOf samples a field every 20ms until stop is closed and returns the largest reading.
func (p *plugin) peakOf(t *testing.T, field string, stop <-chan struct{}) float64 {
	peak := 0.0
	for {
		peak = max(peak, p.memoryMB(t, field))
		select {
		case <-stop:
			return peak
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
