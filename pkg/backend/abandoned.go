package backend

import (
	"context"
	"sync"
)

// Storage calls that cannot be cancelled (librados, librbd) keep running after their
// request's deadline. A request that must not overlap with its own unfinished work (the
// driver's per-volume lock) collects them through its context and waits for them to end.

type abandonedKey struct{}

// Abandoned collects the storage calls a request gave up on while they still ran.
type Abandoned struct {
	mu      sync.Mutex
	pending []<-chan struct{}
}

// WithAbandoned returns a context whose abandoned storage calls are collected in the
// returned Abandoned.
func WithAbandoned(ctx context.Context) (context.Context, *Abandoned) {
	a := &Abandoned{}
	return context.WithValue(ctx, abandonedKey{}, a), a
}

// Abandon records that a call of ctx's request still runs and ends when done closes.
// Backends call it when they return at the deadline without the call's result.
func Abandon(ctx context.Context, done <-chan struct{}) {
	if a, ok := ctx.Value(abandonedKey{}).(*Abandoned); ok {
		a.mu.Lock()
		a.pending = append(a.pending, done)
		a.mu.Unlock()
	}
}

// Done returns a channel that closes when every abandoned call has ended, or nil when the
// request abandoned none.
func (a *Abandoned) Done() <-chan struct{} {
	a.mu.Lock()
	pending := append([]<-chan struct{}(nil), a.pending...)
	a.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	all := make(chan struct{})
	go func() {
		for _, p := range pending {
			<-p
		}
		close(all)
	}()
	return all
}
