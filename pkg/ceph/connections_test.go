package ceph

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend"
)

// fakeCluster stands in for librados connect and shutdown, counting both.
type fakeCluster struct {
	mu       sync.Mutex
	connects int
	shut     map[*rados.Conn]bool
	gate     chan struct{} // when set, connects wait for it
}

func newTestConns(f *fakeCluster) *Connections {
	p := NewConnections()
	f.shut = map[*rados.Conn]bool{}
	p.connect = func(Cluster, Credentials) (*rados.Conn, error) {
		if f.gate != nil {
			<-f.gate
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.connects++
		return new(rados.Conn), nil
	}
	p.shutdown = func(c *rados.Conn) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.shut[c] = true
	}
	return p
}

func (f *fakeCluster) isShut(c *Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shut[c.handle]
}

func (f *fakeCluster) waitShut(t *testing.T, c *Conn) {
	t.Helper()
	for end := time.Now().Add(time.Second); !f.isShut(c); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("retired handle never shut down")
		}
	}
}

var testCluster = Cluster{ClusterID: "c1", Monitors: []string{"10.0.0.1:6789"}}

func TestConnsReusesOneHandle(t *testing.T) {
	f := &fakeCluster{gate: make(chan struct{})}
	p := newTestConns(f)
	cred := Credentials{UserID: "u", Key: "k1"}
	var wg sync.WaitGroup
	got := make([]*Conn, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = p.Conn(context.Background(), "b1", testCluster, cred)
		}()
	}
	time.Sleep(10 * time.Millisecond)
	close(f.gate)
	wg.Wait()
	for _, c := range got {
		if c == nil || c != got[0] {
			t.Fatalf("a burst got different handles: %v", got)
		}
	}
	if f.connects != 1 {
		t.Fatalf("%d connects for one key", f.connects)
	}
}

// A request whose deadline passes while the monitors are slow gets Unavailable; the
// connect goes on and the next request uses its handle.
func TestConnsConnectOutlivesTheRequest(t *testing.T) {
	f := &fakeCluster{gate: make(chan struct{})}
	p := newTestConns(f)
	cred := Credentials{UserID: "u", Key: "k1"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := p.Conn(ctx, "b1", testCluster, cred); backend.CodeOf(err) != backend.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	close(f.gate)
	c, err := p.Conn(context.Background(), "b1", testCluster, cred)
	if err != nil || c == nil || f.connects != 1 {
		t.Fatalf("conn %v, err %v, %d connects", c, err, f.connects)
	}
}

// A blocklisted handle, one whose key is refused, and one a backend asks to replace
// (librbd left an image open on it) are replaced; the old one is shut down only when its
// calls are done.
func TestConnsReplacesBrokenHandle(t *testing.T) {
	breaks := map[string]func(c *Conn) error{
		"blocklisted": func(*Conn) error { return cephErr(-int(syscall.ESHUTDOWN)) },
		"key refused": func(*Conn) error { return cephErr(-int(syscall.EACCES)) },
		"asked to replace": func(c *Conn) error {
			c.Replace("librbd left image i1 open on it")
			return nil
		},
	}
	for name, breakIt := range breaks {
		t.Run(name, func(t *testing.T) {
			f := &fakeCluster{}
			p := newTestConns(f)
			cred := Credentials{UserID: "u", Key: "k1"}
			old, _ := p.Conn(context.Background(), "b1", testCluster, cred)
			block := make(chan struct{})
			strand(old.Do, block)
			old.Do(context.Background(), func() error { return breakIt(old) })

			fresh, err := p.Conn(context.Background(), "b1", testCluster, cred)
			if err != nil || fresh == old {
				t.Fatalf("broken handle handed out again (%v)", err)
			}
			if f.isShut(old) {
				t.Fatal("old handle shut down under a running call")
			}
			close(block)
			f.waitShut(t, old)
			if f.isShut(fresh) {
				t.Fatal("the new handle was shut down")
			}
		})
	}
}

func TestConnsRetiresHandleOfChangedKey(t *testing.T) {
	f := &fakeCluster{}
	p := newTestConns(f)
	old, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k1"})
	other, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "v", Key: "k1"})
	fresh, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k2"})
	if fresh == old {
		t.Fatal("a new key got the old handle")
	}
	f.waitShut(t, old)
	if f.isShut(other) || f.isShut(fresh) {
		t.Fatal("handles of another user or the new key were shut down")
	}
}

// A user has one key per cluster: once one backend learns the new key, the handles every
// other backend of that cluster made with the old key are finished too (an idle backend
// would otherwise stay connected with a key the operator rotated away).
func TestConnsRetiresOldKeyHandlesOfEveryBackend(t *testing.T) {
	f := &fakeCluster{}
	p := newTestConns(f)
	fsOld, _ := p.Conn(context.Background(), "cephfs", testCluster, Credentials{UserID: "u", Key: "k1"})
	rbdOld, _ := p.Conn(context.Background(), "rbd", testCluster, Credentials{UserID: "u", Key: "k1"})
	if f.isShut(fsOld) {
		t.Fatal("a second backend with the same key shut the first one's handle down")
	}
	otherCluster := Cluster{ClusterID: "c2", Monitors: []string{"10.0.0.2:6789"}}
	elsewhere, _ := p.Conn(context.Background(), "cephfs", otherCluster, Credentials{UserID: "u", Key: "k1"})
	if _, err := p.Conn(context.Background(), "rbd", testCluster, Credentials{UserID: "u", Key: "k2"}); err != nil {
		t.Fatal(err)
	}
	f.waitShut(t, fsOld)
	f.waitShut(t, rbdOld)
	if f.isShut(elsewhere) {
		t.Fatal("the same user's handle on another cluster was shut down")
	}
	fsNew, _ := p.Conn(context.Background(), "cephfs", testCluster, Credentials{UserID: "u", Key: "k2"})
	if fsNew == fsOld {
		t.Fatal("the cephfs backend kept its old-key handle")
	}
}

func TestConnsCloseWaitsForCalls(t *testing.T) {
	f := &fakeCluster{}
	p := newTestConns(f)
	c, _ := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k"})
	block := make(chan struct{})
	strand(c.Do, block)
	p.Close()
	if f.isShut(c) {
		t.Fatal("Close shut a handle down under a call")
	}
	close(block)
	f.waitShut(t, c)
	if _, err := p.Conn(context.Background(), "b1", testCluster, Credentials{UserID: "u", Key: "k"}); backend.CodeOf(err) != backend.Unavailable {
		t.Fatalf("a connection handed out after Close: %v", err)
	}
}

// Calls stranded on one backend's silent daemon (a frozen CephFS mgr) leave another
// backend of the same cluster and user its own handle and allowance.
func TestConnsIsolatesBackends(t *testing.T) {
	f := &fakeCluster{}
	p := newTestConns(f)
	cred := Credentials{UserID: "u", Key: "k"}
	fs, _ := p.Conn(context.Background(), "cephfs", testCluster, cred)
	rbd, _ := p.Conn(context.Background(), "rbd", testCluster, cred)
	if fs == rbd {
		t.Fatal("two backends share a handle")
	}
	block := make(chan struct{})
	defer close(block)
	for i := 0; i < MaxStranded; i++ {
		strand(fs.Do, block)
	}
	if err := fs.Do(context.Background(), func() error { return nil }); backend.CodeOf(err) != backend.Unavailable {
		t.Fatalf("stranded backend still takes calls: %v", err)
	}
	if err := rbd.Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("the other backend is refused: %v", err)
	}
}
