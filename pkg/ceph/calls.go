package ceph

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

// MaxStranded is how many calls abandoned at their requests' deadlines may wait for a
// silent Ceph daemon at once, per cluster and user; past it new calls fail at once instead
// of tying up more threads.
const MaxStranded = 32

// Replacing a connection for timeouts needs this many in a row, and a connection at least
// replaceAge old, so a cluster that is simply down does not make a new handle per request.
const (
	timeoutsToReplace = 3
	replaceAge        = 30 * time.Second
)

// Calls are the blocking calls in flight on one Ceph connection. librados takes no context
// and cannot cancel a call, so a call whose request gives up goes on in its own goroutine
// until Ceph answers. Calls bounds each call by its request's context, tells the request
// when an abandoned call really ends (backend.Abandon), refuses new calls while too many are
// stranded, and keeps the health needed to replace a broken connection without ever
// shutting it down under a call. The zero value is ready to use.
type Calls struct {
	mu       sync.Mutex
	running  int   // calls started and not yet returned, abandoned ones included
	timeouts int   // calls in a row that ended without an answer
	broken   error // why the connection must be replaced; nil while it is usable
	retired  bool  // shut down once running drops to zero
	closed   bool
	born     time.Time
	onIdle   func() // shuts the handle down after retirement
	stranded *atomic.Int64
}

type call struct{ finished, abandoned bool }

// Do runs fn, a blocking librados/librbd call, and returns its result, or an Unavailable
// error when ctx ends first. In that case fn goes on; the request's backend.Abandoned (if
// its context has one) learns when fn ends.
func (c *Calls) Do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return backend.NotStarted(err)
	}
	cl, err := c.begin()
	if err != nil {
		return err
	}
	done := make(chan struct{})
	var result error
	go func() {
		result = fn()
		c.end(cl, result)
		close(done)
	}()
	select {
	case <-done:
		return result
	case <-ctx.Done():
		if !c.abandon(cl) {
			<-done
			return result
		}
		backend.Abandon(ctx, done)
		return backend.NoAnswer(ctx.Err(), "the call goes on in the background")
	}
}

func (c *Calls) begin() (*call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, backend.Errorf(backend.Unavailable, "the Ceph connection was replaced (%v); retry", c.broken)
	}
	if c.stranded == nil {
		c.stranded = new(atomic.Int64)
	}
	if n := c.stranded.Load(); n >= MaxStranded {
		return nil, backend.Errorf(backend.Unavailable, "%d earlier calls to Ceph are still unanswered after their requests' deadlines; no more are sent until Ceph answers (is a mon, mgr or OSD down?)", n)
	}
	c.running++
	return &call{}, nil
}

// abandon marks a call its request gave up on; false if it finished meanwhile.
func (c *Calls) abandon(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.finished {
		return false
	}
	cl.abandoned = true
	c.stranded.Add(1)
	c.timeouts++
	return true
}

func (c *Calls) end(cl *call, err error) {
	c.mu.Lock()
	cl.finished = true
	c.running--
	if cl.abandoned {
		c.stranded.Add(-1)
	}
	switch errno := Errno(err); {
	case errno == syscall.ESHUTDOWN:
		c.broken = fmt.Errorf("the cluster blocklisted this client")
	case errno == syscall.EACCES:
		c.broken = fmt.Errorf("the cluster refused this client's key")
	case errno == syscall.ETIMEDOUT:
		if !cl.abandoned {
			c.timeouts++
		}
	default:
		c.timeouts = 0
	}
	idle := c.retired && c.running == 0 && !c.closed
	c.closed = c.closed || idle
	c.mu.Unlock()
	if idle && c.onIdle != nil {
		c.onIdle()
	}
}

// unhealthy says why the connection should be replaced, "" while it is fine.
func (c *Calls) unhealthy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.broken != nil:
		return c.broken.Error()
	case c.timeouts >= timeoutsToReplace && time.Since(c.born) >= replaceAge:
		return fmt.Sprintf("%d calls in a row went unanswered", c.timeouts)
	}
	return ""
}

// Replace has the connection replaced for why: it is handed out no more, and shut down once
// its last call returns. For a handle holding what no call of ours can let go, such as an
// image context librbd left open: only the handle's shutdown releases it (Ceph drops its
// watch within a minute).
func (c *Calls) Replace(why string) {
	c.mu.Lock()
	if c.broken == nil {
		c.broken = fmt.Errorf("%s", why)
	}
	c.mu.Unlock()
	c.retire(why)
}

// retire stops the connection from being handed out; it is shut down when its last
// call returns (now, if none runs).
func (c *Calls) retire(why string) {
	c.mu.Lock()
	c.retired = true
	if c.broken == nil {
		c.broken = fmt.Errorf("%s", why)
	}
	idle := c.running == 0 && !c.closed
	c.closed = c.closed || idle
	c.mu.Unlock()
	if idle && c.onIdle != nil {
		c.onIdle()
	}
}
