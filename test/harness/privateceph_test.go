package harness

import (
	"context"
	"os/exec"
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
