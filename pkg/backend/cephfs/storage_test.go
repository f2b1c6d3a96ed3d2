package cephfs

import (
	"context"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

// silentMon is the fake with monitors that time out, or never answer while hang is set.
type silentMon struct {
	*fakeMgr
	hang  chan struct{}
	calls atomic.Int64
}

func (s *silentMon) MonCommand(buf []byte) ([]byte, string, error) {
	s.calls.Add(1)
	if s.hang != nil {
		<-s.hang
	}
	return nil, "", fakeErr{-int(syscall.ETIMEDOUT)}
}

func silentController(t *testing.T, hang bool) (*Controller, *silentMon) {
	s := &silentMon{fakeMgr: newFakeMgr()}
	if hang {
		s.hang = make(chan struct{})
		t.Cleanup(func() { close(s.hang) })
	}
	cfg := &Config{Cluster: ceph.Cluster{ClusterID: "c1", Monitors: []string{"10.0.0.5:6789"}}, FSName: "cephfs"}
	return newController("fs1", cfg, func(context.Context, map[string]string) (commander, error) { return s, nil }), s
}

// TestUnavailableNamesTheCluster: as with RBD and Isilon, a CephFS call the storage did not
// answer fails Unavailable naming the cluster and its monitors, whether Ceph said ETIMEDOUT
// or the request's deadline passed; a request already ended sends nothing.
func TestUnavailableNamesTheCluster(t *testing.T) {
	c, _ := silentController(t, false)
	if _, err := c.Capacity(context.Background(), nil); backend.CodeOf(err) != backend.Unavailable || !strings.Contains(err.Error(), "10.0.0.5:6789") {
		t.Errorf("capacity, monitors answering ETIMEDOUT: %v", err)
	}
	c, _ = silentController(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.CreateVolume(ctx, volReq("pvc-1", 1<<30))
	if backend.CodeOf(err) != backend.Unavailable || !strings.Contains(err.Error(), "Ceph cluster c1 (monitors 10.0.0.5:6789)") {
		t.Errorf("create, monitors silent past the deadline: %v", err)
	}
	c, s := silentController(t, false)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = c.CreateVolume(ctx, volReq("pvc-1", 1<<30))
	if backend.CodeOf(err) != backend.Unavailable || !strings.Contains(err.Error(), "not started") || !strings.Contains(err.Error(), "10.0.0.5:6789") {
		t.Errorf("create with an ended request: %v", err)
	}
	if n := s.calls.Load(); n != 0 {
		t.Errorf("an ended request sent %d monitor commands", n)
	}
}
