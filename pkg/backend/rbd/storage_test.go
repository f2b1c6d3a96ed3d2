package rbd

import (
	"context"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

// TestEndedRequestSendsNothing: the rule all three backends share (backend.Storage): a
// request whose context has ended fails Unavailable "not started", naming the cluster and
// its monitors, and sends Ceph nothing.
func TestEndedRequestSendsNothing(t *testing.T) {
	c, f := newFakeController(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.CreateVolume(ctx, volReq("pvc-1", gib))
	if codeOf(err) != backend.Unavailable || !strings.Contains(err.Error(), "not started") || !strings.Contains(err.Error(), "Ceph cluster c1 (monitors 10.0.0.5:6789)") {
		t.Errorf("create with an ended request: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 0 {
		t.Errorf("an ended request sent Ceph %v", f.calls)
	}
}
