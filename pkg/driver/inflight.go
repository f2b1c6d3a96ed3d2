package driver

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// inflight tracks keys (request names, volume IDs) with an operation in progress, so that a
// concurrent second call on the same volume is answered ABORTED at once instead of racing.
type inflight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func newInflight() *inflight { return &inflight{keys: map[string]struct{}{}} }

// acquire takes all keys or none. It returns a release func, or an ABORTED status.
func (f *inflight) acquire(keys ...string) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if _, busy := f.keys[k]; busy {
			return nil, status.Errorf(codes.Aborted, "an operation on %s is already in progress; retry later", k)
		}
	}
	for _, k := range keys {
		f.keys[k] = struct{}{}
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, k := range keys {
			delete(f.keys, k)
		}
	}, nil
}
