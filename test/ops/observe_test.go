package opstest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// plugin is a shiphold-csi process serving the controller on a unix socket.
type plugin struct {
	conn    *grpc.ClientConn
	out     *syncBuffer
	metrics string
	stop    func()
}

func startPlugin(t *testing.T, cfgPath string, extra ...string) *plugin {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	p := &plugin{out: &syncBuffer{}, metrics: freePort(t)}
	args := append([]string{"--mode=controller", "--endpoint=unix://" + sock, "--config=" + cfgPath,
		"--metrics-address=" + p.metrics, "--probe-interval=1s"}, extra...)
	cmd := exec.Command(binary(t, "shiphold-csi"), args...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(p.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin did not listen on %s:\n%s", sock, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.conn = conn
	return p
}

// scrape waits until every wanted sample line is in /metrics, and returns the last page.
func (p *plugin) scrape(t *testing.T, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	page := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.metrics + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(b)
			missing := false
			for _, w := range want {
				if !strings.Contains(page, w+"\n") {
					missing = true
				}
			}
			if !missing {
				return page
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("metrics never showed %q; last page:\n%s", want, grepLines(page, "shiphold_"))
	return ""
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// jsonLines parses the plugin's output: every line must be one JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON log line: %s", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// TestPluginJSONLogsAndMetrics runs the plugin binary as a controller would run it, with
// --logging-format=json and metrics on, against the OneFS simulator: each line of a
// CreateVolume is JSON with the request's fields and no secret, and the survey's tenant
// usage, quota, capacity and export client counts reach /metrics.
func TestPluginJSONLogsAndMetrics(t *testing.T) {
	sim := harness.StartOneFS(t)
	cfg := &config.Config{
		Backends: []config.Backend{sim.Backend(t, "isilon")},
		Tenants:  config.Tenants{Overrides: map[string]config.TenantQuota{"shop": {MaxBytes: 100 << 20, MaxVolumes: 4}}},
	}
	p := startPlugin(t, writeConfig(t, cfg), "--logging-format=json", "--v=2", "--survey-interval=500ms")
	cc := csi.NewControllerClient(p.conn)
	ctx := ctxT(t, time.Minute)
	vol, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:          "pvc-0b6e4f1c",
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
		Parameters:    map[string]string{backend.ParamBackend: "isilon", backend.ParamPVCNamespace: "shop", backend.ParamPVCName: "media"},
		Secrets:       map[string]string{isilon.SecretUsername: "admin", isilon.SecretPassword: onefsPassword},
		VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := vol.GetVolume()
	if _, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.GetVolumeId(), NodeId: "node-1@10.0.0.1",
		VolumeCapability: &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}},
		VolumeContext: v.GetVolumeContext()}); err != nil {
		t.Fatal(err)
	}
	onefsPUT(t, sim.URL+"/platform/2/protocols/nfs/exports/"+v.GetVolumeContext()[isilon.CtxExportID], `{"clients":["10.0.0.1","10.9.9.9"]}`)

	page := p.scrape(t,
		`shiphold_tenant_bytes{tenant="shop"} 6.7108864e+07`,
		`shiphold_tenant_volumes{tenant="shop"} 1`,
		`shiphold_tenant_quota_bytes{tenant="shop"} 1.048576e+08`,
		`shiphold_tenant_quota_volumes{tenant="shop"} 4`,
		`shiphold_exports{backend="isilon"} 1`,
		`shiphold_export_clients{backend="isilon"} 2`,
		`shiphold_export_stale_clients{backend="isilon"} 1`,
		`shiphold_backend_up{backend="isilon",kind="isilon"} 1`,
		`shiphold_csi_operations_total{backend="isilon",grpc_code="OK",operation="CreateVolume"} 1`,
	)
	if !strings.Contains(page, `shiphold_backend_available_bytes{backend="isilon",kind="isilon"} `) {
		t.Fatalf("no capacity of the backend:\n%s", grepLines(page, "shiphold_"))
	}
	t.Logf("survey metrics:\n%s", grepLines(page, "shiphold_tenant_")+"\n"+grepLines(page, "shiphold_export"))

	p.stop()
	out := p.out.String()
	if strings.Contains(out, onefsPassword) {
		t.Fatal("the Isilon password reached the log")
	}
	var create map[string]any
	raw := ""
	for i, l := range jsonLines(t, out) {
		if l["method"] == "CreateVolume" && l["msg"] == "Call done" {
			create, raw = l, strings.Split(strings.TrimSpace(out), "\n")[i]
		}
	}
	want := map[string]any{"tenant": "shop", "backend": "isilon", "name": "pvc-0b6e4f1c", "created_volume_id": v.GetVolumeId(), "volume_id": ""}
	for k, w := range want {
		if create[k] != w {
			t.Fatalf("CreateVolume line: %s = %v, want %v; line %v", k, create[k], w, create)
		}
	}
	if id, _ := create["request_id"].(string); len(id) != 16 || create["duration"] == nil {
		t.Fatalf("CreateVolume line lacks request_id or duration: %v", create)
	}
	t.Logf("CreateVolume log line: %s", raw)
}
