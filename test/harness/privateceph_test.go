package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrivateCephIsItsOwn starts a private cluster beside the shared one, freezes its monitor
// and shows that the shared cluster (when one runs) still answers while the private one does not.
func TestPrivateCephIsItsOwn(t *testing.T) {
	pc := StartPrivateCeph(t)
	if pc.IP == "127.0.0.1" || !strings.HasPrefix(pc.Cluster.Monitors[0], pc.IP+":") {
		t.Fatalf("private cluster at %s has monitors %v", pc.IP, pc.Cluster.Monitors)
	}
	if out, err := pc.Ceph("health"); err != nil {
		t.Fatalf("ceph health on the private cluster: %v\n%s", err, out)
	}
	resume := pc.Freeze(t, DaemonMon)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ceph", "-c", pc.Conf, "--connect-timeout", "3", "health").CombinedOutput(); err == nil {
		t.Fatalf("the frozen private monitor answered: %s", out)
	}
	resume()
	if out, err := pc.Ceph("health"); err != nil {
		t.Fatalf("the private cluster did not come back after SIGCONT: %v\n%s", err, out)
	}
}

// failedTB is a test that has failed: its cleanups run when the caller says.
type failedTB struct {
	testing.TB
	cleanups []func()
}

func (f *failedTB) Failed() bool      { return true }
func (f *failedTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *failedTB) cleanUp() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// TestPrivateCephKeepsTheLogsOfAFailedTest: the storm test once left RBD trash entries its
// purges never removed, and the private cluster went with the mgr's log, the one record of
// what its task queue did. A failed test's cluster now leaves its daemons' logs behind.
func TestPrivateCephKeepsTheLogsOfAFailedTest(t *testing.T) {
	ft := &failedTB{TB: t}
	pc := StartPrivateCeph(ft)
	ft.cleanUp()
	kept := pc.Dir + "-logs"
	t.Cleanup(func() { os.RemoveAll(kept) })
	if _, err := os.Stat(pc.Dir); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory %s stays: %v", pc.Dir, err)
	}
	for _, daemon := range []string{"mon.a.log", "mgr.x.log", "osd.0.log"} {
		if st, err := os.Stat(filepath.Join(kept, daemon)); err != nil || st.Size() == 0 {
			t.Errorf("%s of the failed test's cluster: %v", daemon, err)
		}
	}
}
