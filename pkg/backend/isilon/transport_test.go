package isilon

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dell/goisilon/api"
)

// TestKeepConnections: with keepConnections a goisilon client making 8 requests at a time
// reuses its connections instead of opening new ones past the second (Go's default), and
// the check fails if a goisilon upgrade moves the transport out of reach.
func TestKeepConnections(t *testing.T) {
	const inFlight, rounds = 8, 10
	for _, keep := range []bool{false, true} {
		var opened atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Millisecond)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"latest":"8"}`))
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				opened.Add(1)
			}
		}
		srv.StartTLS()
		cl, err := api.New(context.Background(), srv.URL, "u", "p", "", 0, 0, &api.ClientOptions{Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		if keep && !keepConnections(cl, inFlight) {
			t.Fatal("keepConnections cannot reach goisilon's transport (did goisilon change its client?)")
		}
		opened.Store(0)
		var wg sync.WaitGroup
		for i := 0; i < inFlight; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < rounds; j++ {
					var resp struct{ Latest string }
					if err := cl.Get(context.Background(), "/platform/latest", "", nil, nil, &resp); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		srv.Close()
		t.Logf("keep=%v: %d connections opened for %d requests, %d at a time", keep, opened.Load(), inFlight*rounds, inFlight)
		if keep && opened.Load() > 2*inFlight {
			t.Errorf("with keepConnections %d connections were opened for %d requests %d at a time, want at most %d", opened.Load(), inFlight*rounds, inFlight, 2*inFlight)
		}
	}
}
