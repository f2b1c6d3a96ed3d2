package backend

import (
	"context"
	"testing"
	"time"
)

func TestAbandonedDoneWaitsForEveryCall(t *testing.T) {
	ctx, a := WithAbandoned(context.Background())
	if a.Done() != nil {
		t.Fatal("a request that abandoned nothing has work to wait for")
	}
	first, second := make(chan struct{}), make(chan struct{})
	Abandon(ctx, first)
	Abandon(ctx, second)
	Abandon(context.Background(), make(chan struct{})) // a context without a collector: ignored
	done := a.Done()
	close(first)
	select {
	case <-done:
		t.Fatal("done while the second call still runs")
	case <-time.After(20 * time.Millisecond):
	}
	close(second)
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("not done after both calls ended")
	}
}
