package isilon

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRequestsInFlightBound: a backend has at most isilon.maxRequestsInFlight operations
// against the array at once (DefaultMaxRequestsInFlight when unset), and uses all of them.
func TestRequestsInFlightBound(t *testing.T) {
	for _, tc := range []struct{ set, want int }{{0, DefaultMaxRequestsInFlight}, {3, 3}, {32, 32}} {
		conn, err := newConnector(&Config{Endpoint: "https://a", MaxRequestsInFlight: tc.set})
		if err != nil {
			t.Fatal(err)
		}
		fake := newFakeArray()
		conn.open = func(context.Context, credentials) (array, error) { return fake, nil }
		var now, most atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 2*tc.want+4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				storage := conn.storage()
				err := storage.Do(context.Background(), goodSecrets, func(client) error {
					n := now.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(20 * time.Millisecond)
					now.Add(-1)
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got := int(most.Load()); got != tc.want {
			t.Errorf("maxRequestsInFlight %d: %d operations at once, want %d", tc.set, got, tc.want)
		}
	}
}
