package ceph

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend"
)

// fakeMDS stands in for libcephfs mounts: it counts mounts and releases, and answers
// GetXattr with the error the test queues (nil: the value).
type fakeMDS struct {
	mu        sync.Mutex
	mounts    int
	released  []*fakeTree
	live      []*fakeTree
	mountErr  error
	errs      []error       // answers of the next GetXattr calls, in order
	gate      chan struct{} // when set, GetXattr waits for it
	shutFirst bool          // the rados handle was shut down before a mount was released
	shut      bool
}

type fakeTree struct {
	m      *fakeMDS
	closed bool
}

func (t *fakeTree) GetXattr(path, name string) ([]byte, error) {
	t.m.mu.Lock()
	gate := t.m.gate
	var err error
	if len(t.m.errs) > 0 {
		err, t.m.errs = t.m.errs[0], t.m.errs[1:]
	}
	closed := t.closed
	t.m.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if closed {
		return nil, cephErr(-int(syscall.EBADF))
	}
	return []byte(name), err
}

func (t *fakeTree) SetXattr(path, name string, value []byte) error       { return nil }
func (t *fakeTree) Subdirs(path string) ([]string, error)                { return nil, nil }
func (t *fakeTree) FindSubdir(string, func(string) bool) (string, error) { return "", nil }
func (t *fakeTree) DirVersion(string) (DirVersion, error)                { return DirVersion{}, nil }
func (t *fakeTree) MakeDirs(path string) error                           { return nil }
func (t *fakeTree) RemoveDir(path string) error                          { return nil }
func (t *fakeTree) RemoveXattr(path, name string) error                  { return nil }

func (t *fakeTree) Close() {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	t.closed = true
	t.m.released = append(t.m.released, t)
	if t.m.shut {
		t.m.shutFirst = true
	}
}

func (f *fakeMDS) conns(c *fakeCluster) *Connections {
	p := newTestConns(c)
	shutdown := p.shutdown
	p.shutdown = func(h *rados.Conn) {
		f.mu.Lock()
		f.shut = true
		f.mu.Unlock()
		shutdown(h)
	}
	p.mountFS = func(_ *rados.Conn, fsName string) (fsTree, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.mounts++
		if f.mountErr != nil {
			return nil, mountError(fsName, f.mountErr)
		}
		t := &fakeTree{m: f}
		f.live = append(f.live, t)
		return t, nil
	}
	return p
}

func (f *fakeMDS) counts() (mounts, released int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mounts, len(f.released)
}

func getXattr(c *Conn, ctx context.Context) error {
	return c.Do(ctx, func() error { _, err := c.GetXattr("cephfs", "/volumes", "user.x"); return err })
}

func TestFSOneMountPerFilesystem(t *testing.T) {
	f := &fakeMDS{gate: make(chan struct{})}
	p := f.conns(&fakeCluster{})
	c, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k"})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := getXattr(c, context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	close(f.gate)
	wg.Wait()
	if err := c.Do(context.Background(), func() error { _, err := c.GetXattr("other", "/", "user.x"); return err }); err != nil {
		t.Fatal(err)
	}
	if mounts, released := f.counts(); mounts != 2 || released != 0 {
		t.Fatalf("%d mounts (want one per filesystem: 2), %d released", mounts, released)
	}
}

// An MDS that evicted the client (blocklisted it, or closed its session after a failover)
// costs a remount: the call is answered from a new mount, and the old one is released once
// the calls still on it are done.
func TestFSRemountsAfterEviction(t *testing.T) {
	f := &fakeMDS{}
	p := f.conns(&fakeCluster{})
	c, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k"})
	if err := getXattr(c, context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, errno := range []syscall.Errno{syscall.ESHUTDOWN, syscall.ENOTCONN} {
		f.mu.Lock()
		f.errs = []error{cephErr(-int(errno))}
		f.mu.Unlock()
		if err := getXattr(c, context.Background()); err != nil {
			t.Fatalf("%v: not retried on a new mount: %v", errno, err)
		}
	}
	waitReleased(t, f, 2)
	if mounts, _ := f.counts(); mounts != 3 {
		t.Fatalf("%d mounts, want 3 (two evictions)", mounts)
	}
	if why := c.unhealthy(); why != "" {
		t.Fatalf("a remount made the rados connection unhealthy: %s", why)
	}
	// Evicted again at once: the second failure is the caller's (and the pool's) to see.
	f.mu.Lock()
	f.errs = []error{cephErr(-int(syscall.ESHUTDOWN)), cephErr(-int(syscall.ESHUTDOWN))}
	f.mu.Unlock()
	if err := getXattr(c, context.Background()); Errno(err) != syscall.ESHUTDOWN {
		t.Fatalf("err = %v, want ESHUTDOWN after one remount", err)
	}
}

func waitReleased(t *testing.T, f *fakeMDS, n int) {
	t.Helper()
	for end := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		if _, released := f.counts(); released >= n {
			return
		}
		if time.Now().After(end) {
			_, released := f.counts()
			t.Fatalf("%d mounts released, want %d", released, n)
		}
	}
}

// A call abandoned at its deadline keeps its mount: Close releases the mounts only after
// it returned, and before the rados handle they share is shut down.
func TestFSMountsReleasedAfterLastCallOnClose(t *testing.T) {
	f := &fakeMDS{}
	fc := &fakeCluster{}
	p := f.conns(fc)
	c, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k"})
	if err := getXattr(c, context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := getXattr(c, ctx); backend.CodeOf(err) != backend.Unavailable {
		t.Fatalf("err = %v, want Unavailable at the deadline", err)
	}
	p.Close()
	time.Sleep(10 * time.Millisecond)
	if _, released := f.counts(); released != 0 || fc.isShut(c) {
		t.Fatal("Close released the mount or shut the handle under an abandoned call")
	}
	close(f.gate)
	waitReleased(t, f, 1)
	fc.waitShut(t, c)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shutFirst {
		t.Fatal("the rados handle was shut down before the libcephfs mount")
	}
	if f.live[0].closed != true {
		t.Fatal("the mount was not released")
	}
}

// A mount refused for missing MDS caps says which caps, is tried again by the next call,
// and does not pass for a refused rados key (which would replace the connection).
func TestFSMountRefusedNamesCaps(t *testing.T) {
	f := &fakeMDS{mountErr: cephErr(-int(syscall.EACCES))}
	p := f.conns(&fakeCluster{})
	c, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k"})
	for i := 0; i < 2; i++ {
		err := getXattr(c, context.Background())
		if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), `mds "allow rw fsname=cephfs"`) {
			t.Fatalf("err = %v, want FailedPrecondition naming the mds caps", err)
		}
	}
	if mounts, _ := f.counts(); mounts != 2 {
		t.Fatalf("%d mounts, want a new attempt per call", mounts)
	}
	if why := c.unhealthy(); why != "" {
		t.Fatalf("missing MDS caps made the rados connection unhealthy: %s", why)
	}
}
