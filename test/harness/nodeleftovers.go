package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Kill SIGKILLs every daemon of the cluster at once: the cluster is gone, as after a power
// loss of the storage, while its clients on this node still run.
func (pc *PrivateCluster) Kill(t testing.TB) {
	t.Helper()
	for _, d := range []string{DaemonMon, DaemonMgr, DaemonOSD, DaemonMDS} {
		if err := syscall.Kill(pc.PID(t, d), syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s: %v", d, err)
		}
	}
}

// NodeLeftovers lists what of a staged volume still exists on the node below dir: mounts,
// loop devices on a file below it, and ceph-fuse or rbd-fuse processes whose arguments
// name a path below it.
func NodeLeftovers(dir string) []string {
	var left []string
	for _, m := range mountsBelow(dir) {
		left = append(left, "mount "+m)
	}
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[1], dir+"/") {
			left = append(left, "loop device "+l)
		}
	}
	for _, pid := range fuseDaemonsBelow(dir) {
		cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		left = append(left, "process "+strconv.Itoa(pid)+": "+strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " "))
	}
	return left
}

// ForceNodeCleanup takes down what a failed test left below dir, whatever it costs: the
// FUSE daemons SIGKILLed (which unblocks every call waiting on them), every loop device on
// a file below dir detached, then every mount lazily unmounted. For test cleanup
// only, after a test found the plugin could not do it.
func ForceNodeCleanup(dir string) {
	for _, pid := range fuseDaemonsBelow(dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(200 * time.Millisecond)
	// Loop devices first, while their files still show the path below dir.
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[1], dir+"/") {
			exec.Command("losetup", "--detach", f[0]).Run()
		}
	}
	for _, m := range mountsBelow(dir) {
		unix.Unmount(m, unix.MNT_DETACH)
	}
}

// mountsBelow lists the mount points below dir, deepest first.
func mountsBelow(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mounts")
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[1], dir+"/") {
			out = append(out, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// fuseDaemonsBelow lists the ceph-fuse and rbd-fuse processes with an argument below dir.
func fuseDaemonsBelow(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if b := filepath.Base(argv[0]); b != "ceph-fuse" && b != "rbd-fuse" {
			continue
		}
		for _, a := range argv[1:] {
			if strings.HasPrefix(a, dir+"/") {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// SucceedsWithin runs a call that must succeed within bound: it fails the test when the call
// errs or takes longer, and stops it (Fatal) when the call is still blocked well past the
// bound; a cleanup such as ForceNodeCleanup then unblocks the call.
func SucceedsWithin(t *testing.T, name string, bound time.Duration, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bound)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- call(ctx) }()
	select {
	case err := <-done:
		took := time.Since(start).Round(time.Millisecond)
		t.Logf("%s answered after %v: %v", name, took, err)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if took > bound {
			t.Errorf("%s took %v, more than %v", name, took, bound)
		}
	case <-time.After(bound + 15*time.Second):
		t.Fatalf("%s still blocked after %v", name, time.Since(start).Round(time.Second))
	}
}
