package backend

import (
	"context"
	"strings"
	"sync"
)

// TenantSetup runs a backend's once-per-tenant setup of a create (a CephFS subvolume group,
// an RBD namespace, the tenant's identity) once per key among concurrent creates, and
// remembers a success until it is forgotten: a burst of a tenant's first creates sends the
// storage one setup and waits for it, instead of one each, which the mon (or the
// single-threaded mgr volumes module) would serve one after the other before any volume.
// A failure is not remembered: the next caller tries again. The zero value is ready to use.
type TenantSetup struct {
	mu   sync.Mutex
	runs map[string]*setupRun
}

type setupRun struct {
	done  chan struct{} // closed when fn has returned; value and err are set then
	value string
	err   error
}

// Do returns key's remembered value, or runs fn for it (once among concurrent callers). A
// caller whose run failed in another request tries itself, under its own deadline.
func (t *TenantSetup) Do(ctx context.Context, key string, fn func() (string, error)) (string, error) {
	for {
		t.mu.Lock()
		if t.runs == nil {
			t.runs = map[string]*setupRun{}
		}
		r, running := t.runs[key]
		if !running {
			r = &setupRun{done: make(chan struct{})}
			t.runs[key] = r
		}
		t.mu.Unlock()
		if !running {
			t.run(key, r, fn)
			return r.value, r.err
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return "", NotStarted(ctx.Err())
		}
		if r.err == nil {
			return r.value, nil
		}
	}
}

func (t *TenantSetup) run(key string, r *setupRun, fn func() (string, error)) {
	r.err = errSetupPanicked
	defer func() {
		if r.err != nil {
			t.mu.Lock()
			if t.runs[key] == r {
				delete(t.runs, key)
			}
			t.mu.Unlock()
		}
		close(r.done)
	}()
	r.value, r.err = fn()
}

// errSetupPanicked is what waiters see of a run whose fn panicked (the driver's recovery
// interceptor answers the request that ran it).
var errSetupPanicked = Errorf(Internal, "tenant setup panicked")

// Forget drops key's remembered value; a run in progress still answers its waiters.
func (t *TenantSetup) Forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.runs, key)
}

// ForgetSuffix drops every key ending in suffix (a tenant's keys on every pool or
// file system).
func (t *TenantSetup) ForgetSuffix(suffix string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.runs {
		if strings.HasSuffix(k, suffix) {
			delete(t.runs, k)
		}
	}
}
