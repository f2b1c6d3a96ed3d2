package mounter

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// fuseNode is a node with one FUSE mount at mp served by ceph-fuse (pid 40): a fake mount
// table, a fake /proc, and a record of every step a teardown takes. Each node has its own
// mount point, so that a call a case leaves blocked does not mark the next case's path.
type fuseNode struct {
	*mount.FakeMounter
	mp    string
	mu    sync.Mutex
	steps []string
	root  string
	// hang blocks a plain unmount until closed, as a dead cluster does.
	hang chan struct{}
	// statHangs blocks a stat of the mount root until closed (a dead cluster too).
	statHangs chan struct{}
	// aborted: the FUSE connection is gone (ENOTCONN).
	aborted bool
	// obeys is the signal the daemon exits on besides SIGKILL (0: none).
	obeys unix.Signal
	// stuckInKernel: the daemon survives even SIGKILL.
	stuckInKernel bool
}

func newFUSENode(t *testing.T) *fuseNode {
	mp := filepath.Join(t.TempDir(), "fs")
	n := &fuseNode{FakeMounter: mount.NewFakeMounter([]mount.MountPoint{{Path: mp, Type: "fuse.ceph-fuse"}}), mp: mp, root: t.TempDir()}
	fakeProc(t, n.root, 40, "S", 1000, "ceph-fuse", mp, "--client_fs=cephfs")
	oldForce, oldLazy, oldAnswers := forceUnmount, lazyUnmount, answers
	t.Cleanup(func() { forceUnmount, lazyUnmount, answers = oldForce, oldLazy, oldAnswers })
	answers = func(ctx context.Context, mp string, timeout time.Duration) bool {
		n.note("stat")
		return !n.aborted && (n.statHangs == nil || OnMount(ctx, mp, timeout, func() error { <-n.statHangs; return nil }) == nil)
	}
	forceUnmount = func(target string) error { n.note("force"); return n.FakeMounter.Unmount(target) }
	lazyUnmount = func(target string) error { n.note("lazy"); return n.FakeMounter.Unmount(target) }
	return n
}

func (n *fuseNode) note(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.steps = append(n.steps, s)
}

func (n *fuseNode) Steps() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.steps, " ")
}

// Unmount is the plain unmount.
func (n *fuseNode) Unmount(target string) error {
	n.note("umount")
	if n.hang != nil {
		<-n.hang
	}
	return n.FakeMounter.Unmount(target)
}

func (n *fuseNode) daemonExitsAfter(d time.Duration) {
	time.AfterFunc(d, func() { os.RemoveAll(filepath.Join(n.root, "40")) })
}

func (n *fuseNode) teardown(exitWait time.Duration) FUSETeardown {
	procs := Procs{Root: n.root, term: 50 * time.Millisecond, signal: func(d Daemon, sig unix.Signal, still func() bool) error {
		if !still() {
			return nil
		}
		n.note(unix.SignalName(sig))
		if (sig == n.obeys || sig == unix.SIGKILL) && !n.stuckInKernel {
			os.RemoveAll(filepath.Join(n.root, strconv.Itoa(d.PID)))
		}
		return nil
	}}
	return FUSETeardown{Procs: procs, Command: "ceph-fuse", CallTimeout: 100 * time.Millisecond, ExitWait: exitWait}
}

// leftovers says what of the mount is still there.
func (n *fuseNode) leftovers(f FUSETeardown) string {
	var left []string
	if mounted, _ := MountedAt(n, n.mp); mounted {
		left = append(left, "mount")
	}
	if len(f.Procs.Serving("ceph-fuse", n.mp)) > 0 {
		left = append(left, "daemon")
	}
	return strings.Join(left, " ")
}

func TestFUSETeardown(t *testing.T) {
	cases := []struct {
		name string
		// setup shapes the node; dead is what the caller already knows.
		setup func(n *fuseNode)
		dead  bool
		// steps taken, in order; fails: the teardown must report an error.
		steps string
		fails bool
	}{
		{name: "healthy: unmount, the daemon flushes and exits on its own",
			setup: func(n *fuseNode) { n.daemonExitsAfter(50 * time.Millisecond) },
			steps: "stat umount"},
		{name: "cluster gone: the root answers from cache, the plain unmount hangs, forced; the daemon ignores SIGTERM",
			setup: func(n *fuseNode) { n.hang = make(chan struct{}) },
			steps: "stat umount force SIGTERM SIGKILL"},
		{name: "cluster gone: the root does not answer, forced at once",
			setup: func(n *fuseNode) { n.hang, n.statHangs = make(chan struct{}), make(chan struct{}) },
			steps: "stat force SIGTERM SIGKILL"},
		{name: "connection aborted (ENOTCONN): forced at once, no wait for a flush",
			setup: func(n *fuseNode) { n.aborted = true },
			steps: "stat force SIGTERM SIGKILL"},
		{name: "cluster gone: a daemon that obeys SIGTERM is not killed",
			setup: func(n *fuseNode) { n.hang = make(chan struct{}); n.obeys = unix.SIGTERM },
			steps: "stat umount force SIGTERM"},
		{name: "known dead: no plain unmount, no wait for a flush",
			setup: func(n *fuseNode) { n.hang = make(chan struct{}) }, dead: true,
			steps: "force SIGTERM SIGKILL"},
		{name: "the daemon outlives a clean unmount: its flush time, then SIGTERM and SIGKILL",
			setup: func(n *fuseNode) {},
			steps: "stat umount SIGTERM SIGKILL"},
		{name: "a daemon whose mount is already gone is stopped at once",
			setup: func(n *fuseNode) { n.FakeMounter.Unmount(n.mp) },
			steps: "SIGTERM SIGKILL"},
		{name: "a daemon that survives SIGKILL is an error, never success",
			setup: func(n *fuseNode) { n.hang = make(chan struct{}); n.stuckInKernel = true },
			steps: "stat umount force SIGTERM SIGKILL", fails: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newFUSENode(t)
			tc.setup(n)
			for _, c := range []chan struct{}{n.hang, n.statHangs} {
				if c != nil {
					defer close(c)
				}
			}
			// A healthy daemon gets 500ms to flush; a dead one must not wait for it.
			f := n.teardown(500 * time.Millisecond)
			start := time.Now()
			err := f.Unmount(context.Background(), n, n.mp, tc.dead)
			took := time.Since(start)
			if got := n.Steps(); got != tc.steps {
				t.Errorf("steps %q, want %q", got, tc.steps)
			}
			if tc.fails {
				if err == nil {
					t.Fatalf("success with %q left", n.leftovers(f))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if left := n.leftovers(f); left != "" {
				t.Fatalf("success with %q left", left)
			}
			if strings.HasPrefix(tc.steps, "stat umount SIGTERM") && took < 500*time.Millisecond {
				t.Errorf("a daemon after a clean unmount was signalled after %v, before its 500ms to flush", took)
			}
			if (tc.dead || n.hang != nil || n.aborted) && took > 2*time.Second {
				t.Errorf("teardown of a dead mount took %v", took)
			}
		})
	}
}

// A mount that neither a forced nor a lazy unmount takes away is reported.
func TestFUSETeardownReportsAMountThatStays(t *testing.T) {
	n := newFUSENode(t)
	n.hang = make(chan struct{})
	defer close(n.hang)
	forceUnmount = func(string) error { n.note("force"); return unix.EBUSY }
	lazyUnmount = func(string) error { n.note("lazy"); return nil }
	f := n.teardown(time.Second)
	if err := f.Unmount(context.Background(), n, n.mp, false); err == nil || !strings.Contains(err.Error(), "still mounted") {
		t.Fatalf("mount that stays: %v (steps %s)", err, n.Steps())
	}
}
