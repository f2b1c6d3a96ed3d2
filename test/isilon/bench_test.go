package isilontest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/onefssim"
)

// TestBenchIsilon (SHIPHOLD_BENCH=1) times CreateVolume and DeleteVolume through the
// driver's gRPC endpoint beside raw Platform API calls making and removing the same
// objects (directory, hard directory quota, NFS export) with the same concurrency, in the
// same process. The array is the in-process OneFS simulator (target=simulator): once as it
// is (latency=0ms, which measures the simulator's speed as much as the driver's), and once
// with 5 ms added to every request, as a LAN array answers, so the figures show how many
// requests the driver makes and how many it has in flight; then, with 50 ms, only the
// bursts and their bound line (boundOnlyLatency).
func TestBenchIsilon(t *testing.T) {
	if os.Getenv("SHIPHOLD_BENCH") != "1" {
		t.Skip("set SHIPHOLD_BENCH=1 to run the isilon benchmark (make bench)")
	}
	for _, latency := range []time.Duration{0, 5 * time.Millisecond, boundOnlyLatency} {
		t.Run(fmt.Sprintf("latency=%s", latency), func(t *testing.T) { benchIsilon(t, latency) })
	}
}

// boundOnlyLatency is a latency at which the bursts alone are timed, against the bound.
// Issue 15 states the bound at 5 ms, where on 2 cores the simulator, the driver and the
// raw client queue for the CPU: there even the raw calls reached only 0.57-0.63 of it.
// At 50 ms per request the latency, not the cores, bounds a burst (the raw calls reached
// 0.93), so the bound line shows whether the driver keeps its requests in flight.
const boundOnlyLatency = 50 * time.Millisecond

func benchIsilon(t *testing.T, latency time.Duration) {
	sizes := harness.BenchSizesFromEnv(t)
	sim := harness.StartOneFSWith(t, func(o *onefssim.Options) { o.Root = memoryRoot(t) })
	be := sim.Backend(t, "isi")
	if n := os.Getenv("SHIPHOLD_BENCH_ISILON_INFLIGHT"); n != "" {
		fmt.Sscan(n, &be.Section.(*isilon.Config).MaxRequestsInFlight)
	}
	tenant := "bench"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	ours := d.DriverSide(map[string]string{backend.ParamBackend: be.Name, backend.ParamPVCNamespace: tenant}, capability, sizes.Bytes)
	raw := &rawPAPI{url: sim.URL, dir: path.Join(be.Section.(*isilon.Config).IsiPath, tenant), bytes: sizes.Bytes,
		client: &http.Client{Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the simulator's self-signed certificate
			MaxIdleConnsPerHost: sizes.Concurrency,
		}}}
	// The driver makes the tenant directory; one volume through each side warms both up.
	warm(t, ctx, ours, "warm")
	warm(t, ctx, raw.side(), "raw-warm")

	sim.Server.SetDelay(latency)
	counts := countRequests(t, ctx, sim, ours, d.Controller(), capability)
	b := &harness.Bench{Kind: "isilon", Sizes: sizes, Driver: ours, Raw: raw.side(),
		Settle: func(testing.TB) {}, // the simulator has no background work
		Suffix: fmt.Sprintf(" target=simulator latency=%dms %s", latency.Milliseconds(), counts)}
	var lines []string
	if latency == boundOnlyLatency {
		lines = b.RunBursts(t, ctx)
	} else {
		lines = b.Run(t, ctx)
	}
	if latency > 0 {
		fmt.Println(boundLine(t, lines, sizes, latency, counts))
	}
}

// memoryRoot is a directory on tmpfs for the simulator's /ifs: an array's namespace
// operations are its own business, and the simulator's (os.Root walks each path, under its
// one lock) took 175 µs per mkdir on this machine's ext4 against 29 µs on tmpfs.
func memoryRoot(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "shiphold-bench-ifs-")
	if err != nil {
		t.Fatalf("the bench keeps the simulator's /ifs on tmpfs (/dev/shm): %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// boundLine holds the burst of creates to issue 15's bound: a burst must not be slower than
// requests_per_create x latency x burst / concurrency, i.e. at least concurrency /
// (requests_per_create x latency) volumes/s; ratio >= 1 meets it. raw_ratio is the raw
// calls' rate (the same requests, same concurrency, no driver) against the same bound: the
// most this machine lets any client reach, since the simulator, the driver and the raw
// client share its cores. A raw_ratio under 1 says the machine, not the latency, bounds
// the burst.
func boundLine(t *testing.T, lines []string, sizes harness.BenchSizes, latency time.Duration, counts requestCounts) string {
	t.Helper()
	prefix := fmt.Sprintf("bench isilon burst%d create:", sizes.Concurrency)
	var rate, raw float64
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			if _, err := fmt.Sscanf(strings.TrimPrefix(l, prefix), " volumes/s=%f raw_volumes/s=%f", &rate, &raw); err != nil {
				t.Fatalf("bench line %q: %v", l, err)
			}
		}
	}
	if rate == 0 || raw == 0 {
		t.Fatalf("no %q line with both rates among %q", prefix, lines)
	}
	bound := float64(sizes.Concurrency) / (float64(counts.create) * latency.Seconds())
	return fmt.Sprintf("bench isilon burst%d create bound: volumes/s=%.1f bound_volumes/s=%.1f ratio=%.2f raw_volumes/s=%.1f raw_ratio=%.2f burst_ms=%.0f bound_ms=%.0f target=simulator latency=%dms %s",
		sizes.Concurrency, rate, bound, rate/bound, raw, raw/bound, float64(sizes.Burst)/rate*1000, float64(sizes.Burst)/bound*1000, latency.Milliseconds(), counts)
}

// requestCounts are the Platform API requests of one CreateVolume, ControllerPublishVolume
// and DeleteVolume through the driver, over a few volumes (a session login or refresh
// would show as a fraction).
type requestCounts struct{ create, publish, delete int }

func (r requestCounts) String() string {
	return fmt.Sprintf("requests_per_create=%d requests_per_publish=%d requests_per_delete=%d", r.create, r.publish, r.delete)
}

func countRequests(t *testing.T, ctx context.Context, sim *harness.OneFS, side harness.BenchSide, ctrl csi.ControllerClient, capability *csi.VolumeCapability) requestCounts {
	t.Helper()
	const n = 5
	per := func(from, to int) int { return (to - from + n/2) / n }
	before := len(sim.Server.Requests())
	var ids []string
	for i := 0; i < n; i++ {
		id, err := side.Create(ctx, fmt.Sprintf("count-%d", i))
		if err != nil {
			t.Fatalf("count requests: %v", err)
		}
		ids = append(ids, id)
	}
	created := len(sim.Server.Requests())
	for _, id := range ids {
		if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "bench-node@192.0.2.10",
			VolumeCapability: capability}); err != nil {
			t.Fatalf("count requests: publish: %v", err)
		}
	}
	published := len(sim.Server.Requests())
	for _, id := range ids {
		if err := side.Delete(ctx, id); err != nil {
			t.Fatalf("count requests: %v", err)
		}
	}
	deleted := len(sim.Server.Requests())
	c := requestCounts{create: per(before, created), publish: per(created, published), delete: per(published, deleted)}
	t.Logf("Platform API requests per volume through the driver: %.1f per create, %.1f per publish, %.1f per delete",
		float64(created-before)/n, float64(published-created)/n, float64(deleted-published)/n)
	return c
}

func warm(t *testing.T, ctx context.Context, side harness.BenchSide, name string) {
	t.Helper()
	h, err := side.Create(ctx, name)
	if err != nil {
		t.Fatalf("warm-up create: %v", err)
	}
	if err := side.Delete(ctx, h); err != nil {
		t.Fatalf("warm-up delete: %v", err)
	}
}

// rawPAPI makes a volume's objects with the fewest Platform API requests, HTTP Basic auth
// and a connection pool as large as the concurrency: a directory, its hard quota and its
// export (3 requests), removed by ID (3 requests).
type rawPAPI struct {
	url, dir string
	bytes    int64
	client   *http.Client
}

func (r *rawPAPI) side() harness.BenchSide {
	return harness.BenchSide{Create: r.create, Delete: r.delete}
}

func (r *rawPAPI) create(ctx context.Context, name string) (string, error) {
	dir := path.Join(r.dir, name)
	if err := r.do(ctx, http.MethodPut, "/namespace"+dir+"?recursive=true", nil,
		map[string]string{"x-isi-ifs-target-type": "container", "x-isi-ifs-access-control": "0777"}, nil); err != nil {
		return "", err
	}
	var quota struct{ ID string }
	if err := r.do(ctx, http.MethodPost, "/platform/1/quota/quotas", map[string]any{
		"path": dir, "type": "directory", "container": true, "enforced": true, "include_snapshots": false,
		"thresholds_include_overhead": false, "thresholds": map[string]any{"hard": r.bytes},
	}, nil, &quota); err != nil {
		return "", err
	}
	var export struct{ ID int }
	if err := r.do(ctx, http.MethodPost, "/platform/2/protocols/nfs/exports?zone=System", map[string]any{
		"paths": []string{dir}, "read_only_clients": []string{isilon.NoAccessClient},
	}, nil, &export); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s|%s|%d", dir, quota.ID, export.ID), nil
}

func (r *rawPAPI) delete(ctx context.Context, handle string) error {
	f := strings.Split(handle, "|")
	if len(f) != 3 {
		return fmt.Errorf("raw handle %q", handle)
	}
	if err := r.do(ctx, http.MethodDelete, "/platform/2/protocols/nfs/exports/"+f[2]+"?zone=System", nil, nil, nil); err != nil {
		return err
	}
	if err := r.do(ctx, http.MethodDelete, "/platform/1/quota/quotas/"+f[1], nil, nil, nil); err != nil {
		return err
	}
	return r.do(ctx, http.MethodDelete, "/namespace"+f[0]+"?recursive=true", nil, nil, nil)
}

func (r *rawPAPI) do(ctx context.Context, method, uri string, body any, headers map[string]string, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.url+uri, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth("admin", "onefs-test-password")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, uri, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
