package driver

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

// logLines captures what klog's global logger writes, one JSON object per line.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

func captureLogs(t *testing.T) *logLines {
	t.Helper()
	l := &logLines{}
	logger := funcr.NewJSON(func(obj string) {
		var m map[string]any
		if err := json.Unmarshal([]byte(obj), &m); err != nil {
			t.Errorf("log line is not JSON: %s", obj)
		}
		l.mu.Lock()
		l.lines = append(l.lines, m)
		l.mu.Unlock()
	}, funcr.Options{Verbosity: 4})
	klog.SetLoggerWithOptions(logger, klog.ContextualLogger(true)) // as --logging-format sets it
	t.Cleanup(klog.ClearLogger)
	return l
}

func (l *logLines) with(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, m := range l.lines {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (l *logLines) all() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.lines...)
}

// serve runs the driver's gRPC server (with its interceptor chain) on an in-memory pipe.
func serve(t *testing.T, d *Driver) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := d.GRPCServer()
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitingController logs a long wait from inside the backend, as a clone or flatten does.
type waitingController struct{ *fakeController }

func (w waitingController) CreateVolume(ctx context.Context, r *backend.VolumeRequest) (*backend.Volume, error) {
	done := backend.LongWait(ctx, "flatten", "image", "csi-vol-x")
	v, err := w.fakeController.CreateVolume(ctx, r)
	done(err)
	return v, err
}

// panickingController panics in CreateVolume, as a nil map or a bad index in a backend would.
type panickingController struct{ *fakeController }

func (panickingController) CreateVolume(_ context.Context, r *backend.VolumeRequest) (*backend.Volume, error) {
	panic("backend bug: no pool for " + r.Name)
}

func createReq(name string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20},
		Parameters:         map[string]string{"backend": "ceph-rbd", backend.ParamPVCNamespace: "shop"},
		Secrets:            map[string]string{"userKey": "AQDsecretsecretsecret=="},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}}
}

// TestRequestLogs: every line of a request, the backend's own included, carries the
// request's fields; secrets reach no line; a slow call gets its line.
func TestRequestLogs(t *testing.T) {
	logs := captureLogs(t)
	f := newFixture(t, config.Tenants{})
	f.d.ControllerServer.opts.Controllers["ceph-rbd"] = waitingController{f.rbd}
	f.d.slowCall = time.Nanosecond
	cc := csi.NewControllerClient(serve(t, f.d))
	resp, err := cc.CreateVolume(context.Background(), createReq("pvc-logged"))
	if err != nil {
		t.Fatal(err)
	}
	lines := logs.all()
	for _, msg := range []string{"Request", "Waiting", "Wait over", "Slow call", "Response"} {
		if len(logs.with(msg)) != 1 {
			t.Fatalf("want one %q line, got: %v", msg, lines)
		}
	}
	id := logs.with("Request")[0]["request_id"]
	if s, _ := id.(string); len(s) != 16 {
		t.Fatalf("request_id %v", id)
	}
	for _, l := range lines {
		want := map[string]any{"request_id": id, "method": "CreateVolume", "tenant": "shop", "backend": "ceph-rbd", "volume_id": "", "name": "pvc-logged"}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("line %q: %s = %v, want %v", l["msg"], k, l[k], v)
			}
		}
		if _, ok := l["duration"]; !ok {
			t.Errorf("line %q has no duration", l["msg"])
		}
	}
	if got := logs.with("Slow call")[0]["created_volume_id"]; got != resp.GetVolume().GetVolumeId() {
		t.Errorf("slow-call line names volume %v, want %s", got, resp.GetVolume().GetVolumeId())
	}
	if w := logs.with("Wait over")[0]; w["wait"] != "flatten" || w["image"] != "csi-vol-x" || w["waited"] == nil {
		t.Errorf("wait line: %v", w)
	}
	raw, _ := json.Marshal(lines)
	if strings.Contains(string(raw), "AQDsecret") {
		t.Fatalf("a secret reached the log: %s", raw)
	}

	// A call by volume ID: tenant and backend come from the ID; a quick call logs at V(2).
	before := len(logs.all())
	f.d.slowCall = time.Hour
	vid := resp.GetVolume().GetVolumeId()
	if _, err := cc.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vid}); err != nil {
		t.Fatal(err)
	}
	done := logs.with("Call done")
	if len(done) != 1 || done[0]["volume_id"] != vid || done[0]["tenant"] != "shop" || done[0]["method"] != "DeleteVolume" || len(logs.all()) <= before {
		t.Fatalf("DeleteVolume lines: %v", logs.all()[before:])
	}
	if done[0]["request_id"] == id {
		t.Fatal("two requests share a request_id")
	}
}

// TestPanicBecomesInternal: a handler that panics answers INTERNAL, its stack is logged
// with the request's fields, and the plugin serves the next call.
func TestPanicBecomesInternal(t *testing.T) {
	logs := captureLogs(t)
	f := newFixture(t, config.Tenants{})
	f.d.ControllerServer.opts.Controllers["ceph-rbd"] = panickingController{f.rbd}
	conn := serve(t, f.d)
	_, err := csi.NewControllerClient(conn).CreateVolume(context.Background(), createReq("pvc-panic"))
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "backend bug: no pool for pvc-panic") {
		t.Fatalf("CreateVolume that panics: %v, want INTERNAL naming the panic", err)
	}
	p := logs.with("Call panicked; answering INTERNAL")
	if len(p) != 1 || p[0]["method"] != "CreateVolume" || p[0]["tenant"] != "shop" ||
		!strings.Contains(p[0]["stack"].(string), "panickingController.CreateVolume") {
		t.Fatalf("panic line: %v", logs.all())
	}
	if failed := logs.with("Call failed"); len(failed) != 1 || failed[0]["code"] != "Internal" || failed[0]["request_id"] != p[0]["request_id"] {
		t.Fatalf("the outcome line after the panic: %v", failed)
	}
	if _, err := csi.NewIdentityClient(conn).Probe(context.Background(), &csi.ProbeRequest{}); err != nil {
		t.Fatalf("the plugin no longer serves after a panic: %v", err)
	}
}
