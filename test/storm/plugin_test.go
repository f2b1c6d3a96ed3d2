package storm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// plugin is the real shiphold-csi binary serving the controller on a unix socket, in a
// process of its own that the storm SIGKILLs and starts again on the same socket. Like a
// Deployment, it also starts the plugin again when it exits by itself; such exits are
// counted and their status logged.
type plugin struct {
	bin, config, sock, log string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	kills    int
	exits    []string // exits the storm did not cause
	victim   *exec.Cmd
	stopping bool
}

// buildPlugin compiles cmd/shiphold-csi once per test binary run.
func buildPlugin(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	bin := filepath.Join(t.TempDir(), "shiphold-csi")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/shiphold-csi")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/shiphold-csi: %v\n%s", err, out)
	}
	return bin
}

func (p *plugin) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *plugin) startLocked() error {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, "--mode", "controller", "--endpoint", "unix://"+p.sock, "--config", p.config,
		"--probe-interval", "0", "--v", "2")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	fmt.Fprintf(logf, "=== storm: plugin started, pid %d\n", cmd.Process.Pid)
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go p.watch(cmd, done, logf)
	return nil
}

// replace starts a new plugin in place of old, unless another one replaced it already:
// one controller at a time, as one leader.
func (p *plugin) replace(old *exec.Cmd) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != old || p.stopping {
		return nil
	}
	return p.startLocked()
}

// watch waits for one plugin process and starts the next one if it exited on its own.
func (p *plugin) watch(cmd *exec.Cmd, done chan struct{}, logf *os.File) {
	err := cmd.Wait()
	fmt.Fprintf(logf, "=== storm: plugin pid %d exited: %v\n", cmd.Process.Pid, err)
	logf.Close()
	p.mu.Lock()
	expected := p.stopping || p.victim == cmd
	if !expected {
		p.exits = append(p.exits, fmt.Sprintf("pid %d: %v", cmd.Process.Pid, err))
	}
	p.mu.Unlock()
	close(done)
	if !expected {
		time.Sleep(200 * time.Millisecond)
		p.replace(cmd)
	}
}

// kill9 SIGKILLs the plugin, waits for it to be gone, and starts a new one at once, as a
// Deployment restarts a crashed controller.
func (p *plugin) kill9() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.victim = cmd
	p.mu.Unlock()
	if cmd.Process.Signal(syscall.SIGKILL) == nil {
		p.mu.Lock()
		p.kills++
		p.mu.Unlock()
	}
	<-done
	return p.replace(cmd)
}

func (p *plugin) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.stopping = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// killer SIGKILLs the plugin at random intervals until stop is closed or it has killed
// max times (so that the CO's retries converge, as they do once a crash loop ends); it
// returns when the plugin runs again.
func (p *plugin) killer(t *testing.T, rnd func() time.Duration, max int, stop <-chan struct{}) <-chan struct{} {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for n := 0; n < max; n++ {
			select {
			case <-stop:
				return
			case <-time.After(rnd()):
				if err := p.kill9(); err != nil {
					t.Errorf("restart the plugin: %v", err)
					return
				}
			}
		}
	}()
	return finished
}
