package driver

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
)

// inflight tracks keys (request names, volume IDs) with an operation in progress, so that a
// concurrent second call on the same volume is answered ABORTED at once instead of racing.
// A key stays taken while storage calls its request abandoned at the deadline still run, so
// a retry never overlaps with the work of the attempt before it.
type inflight struct {
	mu sync.Mutex
	// keys maps a taken key to whether its request has returned with work still running.
	keys map[string]bool
}

func newInflight() *inflight { return &inflight{keys: map[string]bool{}} }

// acquire takes all keys or none. It returns the context to do the work with, which
// collects abandoned storage calls, and the release func, which frees the keys once the
// request and every call it abandoned have ended; or an ABORTED status.
func (f *inflight) acquire(ctx context.Context, keys ...string) (context.Context, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if finishing, busy := f.keys[k]; busy {
			if finishing {
				return ctx, nil, status.Errorf(codes.Aborted, "the storage is still working on %s for an earlier request that ran out of time; retry later", k)
			}
			return ctx, nil, status.Errorf(codes.Aborted, "an operation on %s is already in progress; retry later", k)
		}
	}
	for _, k := range keys {
		f.keys[k] = false
	}
	ctx, abandoned := backend.WithAbandoned(ctx)
	return ctx, func() {
		done := abandoned.Done()
		if done == nil {
			f.drop(keys)
			return
		}
		f.mark(keys)
		go func() {
			<-done
			f.drop(keys)
		}()
	}, nil
}

func (f *inflight) mark(keys []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		f.keys[k] = true
	}
}

func (f *inflight) drop(keys []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		delete(f.keys, k)
	}
}
