package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/ceph"
)

// PrivateCluster is a single-node Ceph of a test's own, on a loopback address of its own
// (127.0.0.N), so that a test may freeze or kill its daemons without disturbing the shared
// cluster other packages use at the same time.
type PrivateCluster struct {
	Dir  string
	Conf string
	IP   string
	// Cluster is the config entry for its admin user.
	Cluster ceph.Cluster
	lock    *os.File
}

// StartPrivateCeph brings up hack/micro-ceph.sh in a temporary directory on a free loopback
// address (about 20 s) and tears it down when the test ends. A missing Ceph installation is
// a failure under SHIPHOLD_REQUIRE_STACK=1, as everywhere in the suite.
func StartPrivateCeph(t testing.TB) *PrivateCluster {
	t.Helper()
	_, err := exec.LookPath("ceph-mon")
	Require(t, "Ceph daemons", err == nil, "install them with hack/install-deps.sh")
	ip, lock, err := claimLoopbackIP()
	if err != nil {
		t.Fatalf("private Ceph: %v", err)
	}
	dir, err := os.MkdirTemp("", "shiphold-private-ceph-")
	if err != nil {
		lock.Close()
		t.Fatal(err)
	}
	script := filepath.Join(repoRoot(), "hack", "micro-ceph.sh")
	pc := &PrivateCluster{Dir: dir, Conf: filepath.Join(dir, "ceph.conf"), IP: ip, lock: lock}
	t.Cleanup(pc.stop(t, script))
	cmd := exec.Command(script, "up", dir)
	cmd.Env = append(os.Environ(), "MON_IP="+ip, "CEPH_CONF="+pc.Conf, "BLOCK_SIZE_GB=4")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("private Ceph at %s: micro-ceph.sh up: %v\n%s", ip, err, tail(out, 30))
	}
	fsid, mons := readCephConf(pc.Conf)
	if fsid == "" || len(mons) == 0 {
		t.Fatalf("private Ceph at %s: %s has no fsid or v1 monitor", ip, pc.Conf)
	}
	pc.Cluster = ceph.Cluster{ClusterID: fsid, Monitors: mons, Credentials: ceph.DefaultCredentials{
		UserID: "admin", KeyringFile: filepath.Join(dir, "ceph.client.admin.keyring")}}
	t.Logf("private Ceph up at %s in %s (%s)", ip, time.Since(start).Round(time.Second), dir)
	return pc
}

// stop tears the cluster down; when the test failed, the daemons' logs are kept (beside
// the cluster's directory, "-logs"): the mgr's log says what its task queue did with a
// purge, which nothing else records.
func (pc *PrivateCluster) stop(t testing.TB, script string) func() {
	return func() {
		pc.ResumeAll()
		if t.Failed() { // moved before micro-ceph.sh down removes the directory
			if err := os.Rename(filepath.Join(pc.Dir, "log"), pc.Dir+"-logs"); err == nil {
				t.Logf("private Ceph at %s: its daemons' logs are kept in %s-logs", pc.IP, pc.Dir)
			}
		}
		cmd := exec.Command(script, "down", pc.Dir)
		cmd.Env = append(os.Environ(), "CEPH_CONF="+pc.Conf)
		cmd.Run()
		os.RemoveAll(pc.Dir)
		if pc.lock != nil {
			os.Remove(pc.lock.Name())
			pc.lock.Close()
		}
	}
}

// Daemons of a micro-ceph cluster, by the names of their pid files.
const (
	DaemonMon = "mon.a"
	DaemonMgr = "mgr.x"
	DaemonOSD = "osd.0"
	DaemonMDS = "mds.a"
)

// PID returns the pid of one of the cluster's daemons.
func (pc *PrivateCluster) PID(t testing.TB, daemon string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pc.Dir, "run", daemon+".pid"))
	if err != nil {
		t.Fatalf("pid of %s: %v", daemon, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid of %s: %v", daemon, err)
	}
	return pid
}

// Freeze stops a daemon (SIGSTOP) and returns the function that resumes it; the cluster's
// cleanup resumes every daemon in any case.
func (pc *PrivateCluster) Freeze(t testing.TB, daemon string) (resume func()) {
	t.Helper()
	pid := pc.PID(t, daemon)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze %s (pid %d): %v", daemon, pid, err)
	}
	return func() { syscall.Kill(pid, syscall.SIGCONT) }
}

// ResumeAll sends SIGCONT to every daemon of the cluster.
func (pc *PrivateCluster) ResumeAll() {
	for _, d := range []string{DaemonMon, DaemonMgr, DaemonOSD, DaemonMDS} {
		b, err := os.ReadFile(filepath.Join(pc.Dir, "run", d+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
}

// Ceph runs the ceph CLI against the cluster as admin.
func (pc *PrivateCluster) Ceph(args ...string) ([]byte, error) {
	return exec.Command("ceph", append([]string{"-c", pc.Conf, "--connect-timeout", "15"}, args...)...).CombinedOutput()
}

// claimLoopbackIP finds a 127.0.0.N (N >= 2) whose monitor ports are free and holds a lock
// file for it, so that parallel test processes pick different addresses.
func claimLoopbackIP() (string, *os.File, error) {
	for n := 2; n < 255; n++ {
		ip := fmt.Sprintf("127.0.0.%d", n)
		lockPath := filepath.Join(os.TempDir(), "shiphold-private-ceph-"+ip+".lock")
		f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		if portsFree(ip, 3300, 6789) {
			return ip, f, nil
		}
		f.Close()
	}
	return "", nil, fmt.Errorf("no free loopback address for a private Ceph")
}

func portsFree(ip string, ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// repoRoot is the module root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func tail(b []byte, lines int) string {
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
