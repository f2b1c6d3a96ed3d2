package storm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/test/harness"
)

// plugin is the real shiphold-csi binary serving the controller on a unix socket, in a
// process of its own that the storm SIGKILLs and starts again on the same socket. Any
// other exit is a crash of the plugin: it is recorded (how it ended and its log's last
// lines), the plugin is not started again, and the storm fails.
type plugin struct {
	bin, config, sock, log string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	kills    int
	victim   *exec.Cmd
	stopping bool
	died     chan struct{} // closed at the first exit the storm did not cause
	death    string        // that exit: status or signal, and the log's last lines
}

// logTail is how many of the log's last lines a crash report quotes.
const logTail = 40

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) { harness.Main(m) }

// buildPlugin compiles cmd/shiphold-csi once per test binary run.
func buildPlugin(t *testing.T) string {
	t.Helper()
	return harness.Binary(t, "shiphold-csi")
}

func (p *plugin) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping || p.death != "" {
		return fmt.Errorf("the plugin is not started again: %s", p.deathLocked())
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, "--mode", "controller", "--endpoint", "unix://"+p.sock, "--config", p.config,
		"--probe-interval", "0", "--v", "2")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Before the start: a plugin that dies at once can write before the pid line below.
	fmt.Fprint(logf, startingLine)
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

func (p *plugin) deathLocked() string {
	if p.death == "" {
		return "the storm is stopping"
	}
	return p.death
}

// watch waits for one plugin process; an exit that is neither the storm's SIGKILL nor
// the end of the test is the plugin's own death.
func (p *plugin) watch(cmd *exec.Cmd, done chan struct{}, logf *os.File) {
	err := cmd.Wait()
	fmt.Fprintf(logf, "=== storm: plugin pid %d exited: %v\n", cmd.Process.Pid, err)
	logf.Close()
	p.mu.Lock()
	killed := p.victim == cmd && killedBySIGKILL(cmd.ProcessState)
	if !p.stopping && !killed && p.death == "" {
		p.death = fmt.Sprintf("plugin pid %d died by itself (%s); last lines of %s:\n%s",
			cmd.Process.Pid, cmd.ProcessState, p.log, crashLines(p.log, cmd.Process.Pid))
		close(p.died)
	}
	p.mu.Unlock()
	close(done)
}

func killedBySIGKILL(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// crashLines is the end of the log of process pid: the first line that says why it
// crashed (a Go runtime or C abort message), when there is one, and the last logTail
// lines.
// startingLine goes into the log before each plugin process starts.
const startingLine = "=== storm: starting a plugin\n"

func crashLines(log string, pid int) string {
	b, err := os.ReadFile(log)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if i := bytes.LastIndex(b, []byte(fmt.Sprintf("=== storm: plugin started, pid %d\n", pid))); i >= 0 {
		if j := bytes.LastIndex(b[:i], []byte(startingLine)); j >= 0 {
			i = j
		}
		b = b[i:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var why []string
	for i, l := range lines {
		if i < len(lines)-logTail && isCrashHeader(l) {
			why = append(why, l, "...")
			break
		}
	}
	return strings.Join(append(why, lines[max(0, len(lines)-logTail):]...), "\n")
}

func isCrashHeader(l string) bool {
	for _, p := range []string{"panic:", "fatal error:", "SIGSEGV", "SIGABRT", "SIGBUS", "terminate called", "Aborted"} {
		if strings.Contains(l, p) {
			return true
		}
	}
	return false
}

// crashed returns how the plugin died by itself, "" while it has not.
func (p *plugin) crashed() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.death
}

// kill9 SIGKILLs the plugin, waits for it to be gone, and starts a new one at once, as a
// Deployment restarts a crashed controller. It fails when the plugin had died by itself.
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
	return p.start()
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
// returns when the plugin runs again. It stops when the plugin died by itself; the storm
// reports that.
func (p *plugin) killer(t *testing.T, rnd func() time.Duration, max int, stop <-chan struct{}) <-chan struct{} {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for n := 0; n < max; n++ {
			select {
			case <-stop:
				return
			case <-p.died:
				return
			case <-time.After(rnd()):
				if err := p.kill9(); err != nil {
					if p.crashed() == "" {
						t.Errorf("restart the plugin: %v", err)
					}
					return
				}
			}
		}
	}()
	return finished
}
