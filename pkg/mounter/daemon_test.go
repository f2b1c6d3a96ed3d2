package mounter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func fakeProc(t *testing.T, root string, pid int, state string, start uint64, argv ...string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	os.MkdirAll(dir, 0o755)
	stat := fmt.Sprintf("%d (%s) %s 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0", pid, filepath.Base(argv[0]), state, start)
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(argv, "\x00")+"\x00"), 0o644)
}

func TestProcsFindDaemonsByWhatTheyServe(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 10, "S", 500, "/usr/bin/rbd-fuse", "/stage/a/rbd-fuse", "-r", "img")
	fakeProc(t, root, 11, "S", 501, "rbd-fuse", "/stage/b/rbd-fuse", "-r", "img")
	fakeProc(t, root, 12, "Z", 502, "rbd-fuse", "/stage/a/rbd-fuse")
	fakeProc(t, root, 13, "S", 503, "sleep", "/stage/a/rbd-fuse")
	fakeProc(t, root, 14, "S", 504, "ceph-fuse", "/stage/a/fs", "--client_fs=x")
	p := Procs{Root: root}
	if got := p.Serving("rbd-fuse", "/stage/a/rbd-fuse"); len(got) != 1 || got[0] != (Daemon{PID: 10, Start: 500}) {
		t.Fatalf("serving: %+v", got)
	}
	if !p.Is(Daemon{PID: 10, Start: 500}, "rbd-fuse", "/stage/a/rbd-fuse") {
		t.Fatal("the daemon is not itself")
	}
	for _, d := range []Daemon{{PID: 10, Start: 499}, {PID: 11, Start: 501}, {PID: 12, Start: 502}, {PID: 13, Start: 503}, {PID: 99, Start: 1}} {
		if p.Is(d, "rbd-fuse", "/stage/a/rbd-fuse") {
			t.Fatalf("%+v taken for the rbd-fuse of /stage/a", d)
		}
	}
	if got := p.Serving("ceph-fuse", "/stage/a/fs"); len(got) != 1 || got[0].PID != 14 {
		t.Fatalf("ceph-fuse: %+v", got)
	}
}

// A daemon that outstays its unmount gets SIGTERM, then SIGKILL, only while it is still
// itself.
func TestStopAfterUnmountSignalsOnlyTheSameProcess(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 20, "S", 700, "rbd-fuse", "/m")
	type sent struct {
		d   Daemon
		sig unix.Signal
		at  time.Time
	}
	var signals []sent
	// Like a daemon stuck on a dead cluster: it ignores SIGTERM and dies of SIGKILL.
	p := Procs{Root: root, term: 100 * time.Millisecond, signal: func(d Daemon, sig unix.Signal, still func() bool) error {
		if still() {
			signals = append(signals, sent{d, sig, time.Now()})
			if sig == unix.SIGKILL {
				os.RemoveAll(filepath.Join(root, strconv.Itoa(d.PID)))
			}
		}
		return nil
	}}
	d := p.Serving("rbd-fuse", "/m")
	// Its PID now names a later process (another start time): it is gone, nothing is signalled.
	fakeProc(t, root, 20, "S", 900, "rbd-fuse", "/m")
	if err := p.StopAfterUnmount(context.Background(), d, "rbd-fuse", "/m", 50*time.Millisecond); err != nil || len(signals) != 0 {
		t.Fatalf("reused pid: signalled %v, %v", signals, err)
	}
	// The same process that stays gets SIGTERM after the grace, then SIGKILL.
	d = p.Serving("rbd-fuse", "/m")
	start := time.Now()
	if err := p.StopAfterUnmount(context.Background(), d, "rbd-fuse", "/m", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if len(signals) != 2 || signals[0].sig != unix.SIGTERM || signals[1].sig != unix.SIGKILL || signals[0].d != d[0] {
		t.Fatalf("signals %+v, want SIGTERM then SIGKILL to %+v", signals, d[0])
	}
	if signals[0].at.Sub(start) < 200*time.Millisecond || signals[1].at.Sub(signals[0].at) < 100*time.Millisecond {
		t.Fatalf("SIGTERM after %v (grace 200ms), SIGKILL %v later (wait 100ms)", signals[0].at.Sub(start), signals[1].at.Sub(signals[0].at))
	}
	// One that obeys SIGTERM is not killed.
	fakeProc(t, root, 21, "S", 710, "ceph-fuse", "/c")
	signals = nil
	p.signal = func(d Daemon, sig unix.Signal, still func() bool) error {
		signals = append(signals, sent{d, sig, time.Now()})
		os.RemoveAll(filepath.Join(root, strconv.Itoa(d.PID)))
		return nil
	}
	if err := p.StopAfterUnmount(context.Background(), p.Serving("ceph-fuse", "/c"), "ceph-fuse", "/c", 0); err != nil || len(signals) != 1 || signals[0].sig != unix.SIGTERM {
		t.Fatalf("obeying daemon: %+v %v", signals, err)
	}
}

// A daemon that survives SIGKILL (stuck in the kernel) is reported, never taken for gone.
func TestStopAfterUnmountReportsADaemonThatStays(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 30, "D", 800, "ceph-fuse", "/s")
	p := Procs{Root: root, term: 10 * time.Millisecond, signal: func(Daemon, unix.Signal, func() bool) error { return nil }}
	err := p.StopAfterUnmount(context.Background(), p.Serving("ceph-fuse", "/s"), "ceph-fuse", "/s", 0)
	if err == nil || !strings.Contains(err.Error(), "did not exit") {
		t.Fatalf("daemon that stays: %v", err)
	}
}
