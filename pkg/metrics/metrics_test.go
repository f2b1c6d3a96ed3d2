package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeClock advances by step on every reading, so each call lasts exactly step.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

type createReq struct{ backend string }

func backendOfReq(_ string, req any) string {
	if r, ok := req.(*createReq); ok {
		return r.backend
	}
	return ""
}

func TestUnaryServerInterceptor(t *testing.T) {
	testCases := []struct {
		name       string
		fullMethod string
		req        any
		handlerErr error
		backendOf  func(string, any) string
		wantLabels []string // backend, operation, grpc_code
	}{
		{name: "ok", fullMethod: "/csi.v1.Controller/CreateVolume", req: &createReq{"ceph-rbd"},
			backendOf: backendOfReq, wantLabels: []string{"ceph-rbd", "CreateVolume", "OK"}},
		{name: "status error", fullMethod: "/csi.v1.Controller/CreateVolume", req: &createReq{"isilon"},
			handlerErr: status.Error(codes.ResourceExhausted, "tenant quota"), backendOf: backendOfReq,
			wantLabels: []string{"isilon", "CreateVolume", "ResourceExhausted"}},
		{name: "plain error is Unknown", fullMethod: "/csi.v1.Node/NodeStageVolume", req: &createReq{"ceph-fs"},
			handlerErr: errors.New("boom"), backendOf: backendOfReq,
			wantLabels: []string{"ceph-fs", "NodeStageVolume", "Unknown"}},
		{name: "no backend", fullMethod: "/csi.v1.Identity/Probe", req: struct{}{},
			backendOf: backendOfReq, wantLabels: []string{NoBackend, "Probe", "OK"}},
		{name: "nil backendOf", fullMethod: "/csi.v1.Identity/GetPluginInfo", req: &createReq{"x"},
			wantLabels: []string{NoBackend, "GetPluginInfo", "OK"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m := New(reg)
			m.now = (&fakeClock{t: time.Unix(1000, 0), step: 300 * time.Millisecond}).now
			backend, op := tc.wantLabels[0], tc.wantLabels[1]

			var inFlightDuring float64
			handler := func(ctx context.Context, req any) (any, error) {
				inFlightDuring = testutil.ToFloat64(m.operationsFlight.WithLabelValues(backend, op))
				return "resp", tc.handlerErr
			}
			intercept := m.UnaryServerInterceptor(tc.backendOf)
			resp, err := intercept(context.Background(), tc.req, &grpc.UnaryServerInfo{FullMethod: tc.fullMethod}, handler)
			if !errors.Is(err, tc.handlerErr) || resp != "resp" {
				t.Fatalf("interceptor changed the result: resp=%v err=%v", resp, err)
			}
			if got := testutil.ToFloat64(m.operationsTotal.WithLabelValues(tc.wantLabels...)); got != 1 {
				t.Errorf("operations_total%v = %v, want 1", tc.wantLabels, got)
			}
			if inFlightDuring != 1 {
				t.Errorf("in flight during the call = %v, want 1", inFlightDuring)
			}
			if got := testutil.ToFloat64(m.operationsFlight.WithLabelValues(backend, op)); got != 0 {
				t.Errorf("in flight after the call = %v, want 0", got)
			}
			want := `
# HELP shiphold_csi_operation_duration_seconds Duration of CSI gRPC calls by backend and operation.
# TYPE shiphold_csi_operation_duration_seconds histogram
` + histogramLines(backend, op, 0.3) + `
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shiphold_csi_operation_duration_seconds"); err != nil {
				t.Error(err)
			}
			if n := testutil.CollectAndCount(m.operationsTotal); n != 1 {
				t.Errorf("operations_total series = %d, want 1", n)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("lint: %v %v", problems, err)
			}
		})
	}
}

// histogramLines renders one observation of v seconds in the exposition format.
func histogramLines(backend, op string, v float64) string {
	var b strings.Builder
	labels := `backend="` + backend + `",operation="` + op + `"`
	for _, le := range OperationBuckets {
		n := "0"
		if v <= le {
			n = "1"
		}
		b.WriteString("shiphold_csi_operation_duration_seconds_bucket{" + labels + `,le="` + formatFloat(le) + `"} ` + n + "\n")
	}
	b.WriteString("shiphold_csi_operation_duration_seconds_bucket{" + labels + `,le="+Inf"} 1` + "\n")
	b.WriteString("shiphold_csi_operation_duration_seconds_sum{" + labels + "} " + formatFloat(v) + "\n")
	b.WriteString("shiphold_csi_operation_duration_seconds_count{" + labels + "} 1")
	return b.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestInFlightCountsConcurrentCalls(t *testing.T) {
	m := New(prometheus.NewRegistry())
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	handler := func(ctx context.Context, req any) (any, error) {
		started <- struct{}{}
		<-release
		return nil, nil
	}
	intercept := m.UnaryServerInterceptor(backendOfReq)
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Controller/DeleteVolume"}
	done := make(chan struct{}, 2)
	for range 2 {
		go func() {
			_, _ = intercept(context.Background(), &createReq{"ceph-rbd"}, info, handler)
			done <- struct{}{}
		}()
	}
	<-started
	<-started
	if got := testutil.ToFloat64(m.operationsFlight.WithLabelValues("ceph-rbd", "DeleteVolume")); got != 2 {
		t.Errorf("in flight = %v, want 2", got)
	}
	close(release)
	<-done
	<-done
	if got := testutil.ToFloat64(m.operationsFlight.WithLabelValues("ceph-rbd", "DeleteVolume")); got != 0 {
		t.Errorf("in flight after = %v, want 0", got)
	}
}

func TestSetBackendReachable(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	m.now = func() time.Time { return time.Unix(1700000000, 500_000_000) }
	m.SetBackendReachable("ceph-rbd", "rbd", true)
	m.SetBackendReachable("isilon", "isilon", true)
	m.SetBackendReachable("isilon", "isilon", false)

	want := `
# HELP shiphold_backend_up 1 if the last probe reached the backend, 0 if not.
# TYPE shiphold_backend_up gauge
shiphold_backend_up{backend="ceph-rbd",kind="rbd"} 1
shiphold_backend_up{backend="isilon",kind="isilon"} 0
# HELP shiphold_backend_last_probe_timestamp_seconds Unix time of the last backend reachability probe.
# TYPE shiphold_backend_last_probe_timestamp_seconds gauge
shiphold_backend_last_probe_timestamp_seconds{backend="ceph-rbd",kind="rbd"} 1.7000000005e+09
shiphold_backend_last_probe_timestamp_seconds{backend="isilon",kind="isilon"} 1.7000000005e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"shiphold_backend_up", "shiphold_backend_last_probe_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

func TestNewTwiceOnOneRegistryShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := New(reg), New(reg)
	a.SetBackendReachable("ceph-fs", "cephfs", true)
	if got := testutil.ToFloat64(b.backendUp.WithLabelValues("ceph-fs", "cephfs")); got != 1 {
		t.Errorf("second New does not see the first's value: %v", got)
	}
}

func TestOperationName(t *testing.T) {
	for in, want := range map[string]string{
		"/csi.v1.Controller/CreateVolume": "CreateVolume",
		"NodePublishVolume":               "NodePublishVolume",
		"":                                "",
	} {
		if got := OperationName(in); got != want {
			t.Errorf("OperationName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestServe(t *testing.T) {
	reg := NewRegistry()
	m := New(reg)
	m.SetBackendReachable("ceph-rbd", "rbd", true)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeListener(ctx, ln, reg) }()
	base := "http://" + ln.Addr().String()

	body := get(t, base+"/metrics")
	for _, want := range []string{`shiphold_backend_up{backend="ceph-rbd",kind="rbd"} 1`, "go_goroutines", "process_"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if body := get(t, base+"/healthz"); body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestServeEmptyAddrIsOff(t *testing.T) {
	if err := Serve(context.Background(), "", prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
}

func TestServeBadAddr(t *testing.T) {
	if err := Serve(context.Background(), "256.0.0.1:bad", prometheus.NewRegistry()); err == nil {
		t.Fatal("Serve accepted an invalid address")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}
