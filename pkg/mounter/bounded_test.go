package mounter

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mount "k8s.io/mount-utils"
)

func TestOnMountAnswersWhenTheCallHangs(t *testing.T) {
	release := make(chan struct{})
	var running atomic.Int32
	hang := func() error { running.Add(1); <-release; running.Add(-1); return nil }
	path := filepath.Join(t.TempDir(), "dead")
	start := time.Now()
	err := OnMount(context.Background(), path, 50*time.Millisecond, hang)
	if !errors.Is(err, ErrNotResponding) || time.Since(start) > time.Second {
		t.Fatalf("hung call: %v after %v", err, time.Since(start))
	}
	// While it is stuck, more calls on the path answer at once and start nothing.
	for i := 0; i < 5; i++ {
		if err := OnMount(context.Background(), path, time.Hour, hang); !errors.Is(err, ErrNotResponding) {
			t.Fatalf("call %d while stuck: %v", i, err)
		}
	}
	if n := running.Load(); n != 1 {
		t.Fatalf("%d calls blocked on the dead path, want 1", n)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for OnMount(context.Background(), path, time.Second, func() error { return nil }) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the path stays marked after its stuck call returned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := errors.New("EIO")
	if err := OnMount(context.Background(), path, time.Second, func() error { return want }); err != want {
		t.Fatalf("a call that answers: %v", err)
	}
}

// hangingUnmounter is a mount table whose unmount blocks, as on a dead NFS server.
type hangingUnmounter struct {
	*mount.FakeMounter
	block chan struct{}
}

func (h hangingUnmounter) Unmount(target string) error { <-h.block; return nil }

func TestUnmountDeadFallsBackToForceThenLazy(t *testing.T) {
	oldForce, oldLazy := forceUnmount, lazyUnmount
	t.Cleanup(func() { forceUnmount, lazyUnmount = oldForce, oldLazy })
	var mu sync.Mutex
	var calls []string
	note := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
	forceBlock := make(chan struct{})
	defer close(forceBlock)
	forceUnmount = func(string) error { note("force"); <-forceBlock; return nil }
	lazyUnmount = func(string) error { note("lazy"); return nil }
	h := hangingUnmounter{FakeMounter: mount.NewFakeMounter(nil), block: make(chan struct{})}
	defer close(h.block)
	start := time.Now()
	if err := UnmountDead(context.Background(), h, filepath.Join(t.TempDir(), "t"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[0] != "force" || calls[1] != "lazy" || time.Since(start) > 2*time.Second {
		t.Fatalf("fallbacks %v after %v", calls, time.Since(start))
	}
	// An unmount that answers needs no fallback.
	calls = nil
	fm := mount.NewFakeMounter([]mount.MountPoint{{Path: "/x"}})
	if err := UnmountDead(context.Background(), fm, "/x", time.Second); err != nil || len(calls) != 0 {
		t.Fatalf("healthy unmount: %v %v", calls, err)
	}
}

// A losetup that blocks (on a loop device over a dead FUSE file) answers ErrNotResponding
// within its bound.
func TestRunBoundedAnswersWhenTheCommandHangs(t *testing.T) {
	m, _, fe := NewFake()
	release := make(chan struct{})
	defer close(release)
	fe.Handler = func(name string, args ...string) ([]byte, error) {
		if args[0] == "--detach" {
			<-release
		}
		return nil, nil
	}
	start := time.Now()
	_, err := m.RunBounded(context.Background(), 50*time.Millisecond, "losetup", "--detach", "/dev/loop7")
	if !errors.Is(err, ErrNotResponding) || time.Since(start) > time.Second {
		t.Fatalf("hung command: %v after %v", err, time.Since(start))
	}
	if _, err := m.RunBounded(context.Background(), time.Second, "losetup", "--list"); err != nil {
		t.Fatalf("a command that answers: %v", err)
	}
}

// A lazy unmount that blocks (the last reference of a filesystem flushing to a dead
// device) has detached the mount already: ForceUnmount answers within its bound.
func TestForceUnmountBoundsTheLazyUnmountToo(t *testing.T) {
	oldForce, oldLazy := forceUnmount, lazyUnmount
	t.Cleanup(func() { forceUnmount, lazyUnmount = oldForce, oldLazy })
	block := make(chan struct{})
	defer close(block)
	forceUnmount = func(string) error { return errors.New("device or resource busy") }
	lazyUnmount = func(string) error { <-block; return nil }
	start := time.Now()
	if err := ForceUnmount(context.Background(), filepath.Join(t.TempDir(), "t"), 50*time.Millisecond); err != nil || time.Since(start) > time.Second {
		t.Fatalf("blocked lazy unmount: %v after %v", err, time.Since(start))
	}
}
