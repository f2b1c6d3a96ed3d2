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

// A daemon that outstays its unmount is killed only while it is still itself.
func TestStopAfterUnmountKillsOnlyTheSameProcess(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 20, "S", 700, "rbd-fuse", "/m")
	var killed []Daemon
	p := Procs{Root: root, kill: func(d Daemon, still func() bool) error {
		if still() {
			killed = append(killed, d)
			os.RemoveAll(filepath.Join(root, strconv.Itoa(d.PID)))
		}
		return nil
	}}
	d := p.Serving("rbd-fuse", "/m")
	// Its PID now names a later process (another start time): it is gone, nothing is killed.
	fakeProc(t, root, 20, "S", 900, "rbd-fuse", "/m")
	if err := p.StopAfterUnmount(context.Background(), d, "rbd-fuse", "/m", 50*time.Millisecond); err != nil || len(killed) != 0 {
		t.Fatalf("reused pid: killed %v, %v", killed, err)
	}
	// The same process that stays is killed after the grace.
	d = p.Serving("rbd-fuse", "/m")
	start := time.Now()
	if err := p.StopAfterUnmount(context.Background(), d, "rbd-fuse", "/m", 100*time.Millisecond); err != nil || len(killed) != 1 || killed[0] != d[0] {
		t.Fatalf("stuck daemon: killed %v, %v", killed, err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("killed before its grace")
	}
}
