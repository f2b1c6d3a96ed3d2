package isilon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dell/goisilon"
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

// TestRequestsReuseTheirConnection: one after another, a volume's create and delete
// requests go over the connection the client opened when it connected, also those whose
// answer the driver does not read (OneFS answers a quota's POST with its ID). goisilon
// closes an answer it does not decode without reading it, and Go's transport then drops
// the connection: every such request made the next one pay a new TCP and TLS handshake.
func TestRequestsReuseTheirConnection(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		p := strings.TrimSuffix(r.URL.Path, "/") // goisilon ends every path with a slash
		switch {
		case p == "/platform/latest":
			_, _ = w.Write([]byte(`{"latest":"16"}`))
		case r.Method == http.MethodPost && p == quotasPath:
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"AABpAQEAAAAAAAAAAAAAQA0AAAAAAAAA"}`))
		case r.Method == http.MethodPost && p == exportsPath:
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":7}`))
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default: // a namespace PUT
			w.WriteHeader(http.StatusOK)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()
	cl, err := api.New(ctx, srv.URL, "u", "p", "", verboseLow, 0, &api.ClientOptions{Insecure: true}) // as openPAPI
	if err != nil {
		t.Fatal(err)
	}
	if !keepConnections(cl, 2) { // as openPAPI does
		t.Fatal("keepConnections cannot reach goisilon's transport")
	}
	a := &papi{c: &goisilon.Client{API: cl}, endpoint: srv.URL, timeout: DefaultRequestTimeout}
	connected := opened.Load()
	const volumes = 5
	for i := 0; i < volumes; i++ {
		dir := fmt.Sprintf("/ifs/data/sh/t/csi-vol-%d", i)
		if _, err := a.CreateDir(ctx, dir, volumeMode, map[string]string{attrSize: "1"}); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateDirQuota(ctx, dir, 1<<30); err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreateExport(ctx, Export{Zone: "System", Path: dir, ReadOnlyClients: []string{NoAccessClient}}); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteExport(ctx, "System", 7); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteDirQuota(ctx, dir); err != nil {
			t.Fatal(err)
		}
		if err := a.RemoveAll(ctx, dir); err != nil {
			t.Fatal(err)
		}
	}
	if n := opened.Load() - connected; n > 0 {
		t.Errorf("%d volumes created and deleted one request after another opened %d new connections, want none (each request reuses the idle one)", volumes, n)
	}
}
