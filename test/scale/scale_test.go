// Package scale is make bench-scale: thousands of volumes through the real plugin's CSI
// socket (its own process), and the plugin's memory while idle and during a burst.
package scale

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
	"github.com/shiphold/shiphold/test/harness"
)

// sizes is what the bench does; make bench-scale uses issue 15's counts, the environment
// makes quicker runs: SHIPHOLD_SCALE_RBD (10000 volumes in one tenant), SHIPHOLD_SCALE_CEPHFS
// (2000), SHIPHOLD_SCALE_TENANTS (1000 tenants sharing SHIPHOLD_SCALE_TENANT_VOLUMES, 2000
// RBD volumes), SHIPHOLD_SCALE_CONCURRENCY (32), SHIPHOLD_SCALE_PAGE (100, the paged reads),
// SHIPHOLD_SCALE_LIST_PAGE (500, the full listing), SHIPHOLD_BENCH_BURST (128, the memory
// burst). A count of 0 leaves that part out.
type sizes struct {
	rbd, cephfs, tenants, tenantVolumes, concurrency, page, listPage, burst int
}

func sizesFromEnv(t *testing.T) sizes {
	n := func(key string, def int) int {
		v := os.Getenv(key)
		if v == "" {
			return def
		}
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			t.Fatalf("%s=%q: want a non-negative integer", key, v)
		}
		return i
	}
	s := sizes{rbd: n("SHIPHOLD_SCALE_RBD", 10000), cephfs: n("SHIPHOLD_SCALE_CEPHFS", 2000),
		tenants: n("SHIPHOLD_SCALE_TENANTS", 1000), tenantVolumes: n("SHIPHOLD_SCALE_TENANT_VOLUMES", 2000),
		concurrency: n("SHIPHOLD_SCALE_CONCURRENCY", 32), page: n("SHIPHOLD_SCALE_PAGE", 100),
		listPage: n("SHIPHOLD_SCALE_LIST_PAGE", 500), burst: n("SHIPHOLD_BENCH_BURST", 128)}
	if s.concurrency == 0 || s.page == 0 || s.listPage == 0 {
		t.Fatal("SHIPHOLD_SCALE_CONCURRENCY, SHIPHOLD_SCALE_PAGE and SHIPHOLD_SCALE_LIST_PAGE must be positive")
	}
	return s
}

const volumeBytes = 1 << 20

// TestBenchScale (SHIPHOLD_BENCH=1) creates, lists, pages and deletes thousands of 1 MiB
// volumes per backend through the real plugin, and reads the plugin's memory from
// /proc/<pid>/status: resident while idle (backends connected) and its peak during a burst.
func TestBenchScale(t *testing.T) {
	if os.Getenv("SHIPHOLD_BENCH") != "1" {
		t.Skip("set SHIPHOLD_BENCH=1 to run the scale benchmark (make bench-scale)")
	}
	sz := sizesFromEnv(t)
	cluster := harness.LocalCeph(t)
	rbdBackend := config.Backend{Name: "scale-rbd", Kind: "rbd", Section: &rbd.Config{Cluster: cluster, Pool: "rbd", Mounter: "auto"}}
	fsBackend := config.Backend{Name: "scale-cephfs", Kind: "cephfs", Section: &cephfs.Config{Cluster: cluster, FSName: "cephfs", SubvolumeGroupPrefix: "shiphold-", Mounter: "auto"}}
	// Every tenant has a quota (far above what the bench makes), so that every create goes
	// through the quota check, and the plugin reads the backends' usage as it would.
	cfg := config.Config{Backends: []config.Backend{rbdBackend, fsBackend}, Tenants: config.Tenants{Default: config.TenantQuota{MaxVolumes: 1 << 30}}}
	p := startPlugin(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	store := openStore(t)
	run := fmt.Sprintf("s%d", time.Now().UnixNano()%1e8)

	var lines []string
	lines = append(lines, memoryLine(t, ctx, p, cfg, store, sz, rbdBackend.Name, run+"-mem"))
	fmt.Println(lines[0])
	for _, c := range []struct {
		kind             string
		backend          config.Backend
		volumes, tenants int
		label            string
	}{
		{"rbd", rbdBackend, sz.rbd, 1, "rbd"},
		{"rbd", rbdBackend, sz.tenantVolumes, sz.tenants, fmt.Sprintf("rbd-%d-tenants", sz.tenants)},
		{"cephfs", fsBackend, sz.cephfs, 1, "cephfs"},
	} {
		if c.volumes == 0 || c.tenants == 0 {
			continue
		}
		s := &scaleRun{p: p, store: store, sz: sz, kind: c.kind, backend: c.backend.Name, cfg: c.backend, label: c.label,
			volumes: c.volumes, tenants: tenantNames(run+"-"+c.label, c.tenants)}
		lines = append(lines, s.do(t, ctx))
		fmt.Println(lines[len(lines)-1])
	}
	// Again together at the end, as make bench-scale shows them.
	for _, l := range lines {
		fmt.Println(l)
	}
}

func tenantNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// idleWait is what the bench calls idle: both backends connected (a GetCapacity each), then
// this long without a call; longer than the plugin's --idle-trim-after (10s), after which it
// gives memory back.
const idleWait = 15 * time.Second

// memoryLine reads the plugin's resident memory idle (idleWait), its peak during a burst of
// creates on backendName (deleted afterwards), and idle again after the burst; beside it, a
// second plugin started with --idle-trim-after=0 (as before the trim) idle, the baseline.
func memoryLine(t *testing.T, ctx context.Context, p *plugin, cfg config.Config, store *store, sz sizes, backendName, tenant string) string {
	untrimmed := startPlugin(t, cfg, "--idle-trim-after=0")
	connect := func(p *plugin) {
		for _, b := range cfg.Backends {
			if _, err := p.controller().GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{backend.ParamBackend: b.Name}}); err != nil {
				t.Fatalf("GetCapacity on %s (connects it): %v", b.Name, err)
			}
		}
	}
	connect(p)
	connect(untrimmed)
	firstRead := waitForUsage(t, ctx, p, backendName, tenant)
	waitForUsage(t, ctx, untrimmed, backendName, tenant)
	time.Sleep(idleWait)
	idle, base := p.memoryMB(t, "VmRSS"), untrimmed.memoryMB(t, "VmRSS")
	idleAnon, idleFile := p.memoryMB(t, "RssAnon"), p.memoryMB(t, "RssFile")
	baseAnon, baseFile := untrimmed.memoryMB(t, "RssAnon"), untrimmed.memoryMB(t, "RssFile")
	byFile := p.residentByFile(t)
	untrimmed.stop(t)
	s := &scaleRun{p: p, store: store, sz: sz, kind: "rbd", backend: backendName, volumes: sz.burst, tenants: []string{tenant}}
	t.Cleanup(func() { s.cleanup(t) })
	stop := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(stop) }) // a failed create ends the test before the close below
	peaks := make(chan [2]float64)
	go func() {
		anon := make(chan float64)
		go func() { anon <- p.peakOf(t, "RssAnon", stop) }()
		rss := p.peakOf(t, "VmRSS", stop)
		peaks <- [2]float64{rss, <-anon}
	}()
	s.createAll(t, ctx)
	once.Do(func() { close(stop) })
	peak := <-peaks
	s.deleteAll(t, ctx)
	time.Sleep(idleWait)
	after, afterAnon, afterFile := p.memoryMB(t, "VmRSS"), p.memoryMB(t, "RssAnon"), p.memoryMB(t, "RssFile")
	// VmRSS counts the clean pages of the binary and the Ceph libraries that the plugin maps
	// (shared page cache; where the kernel caches a file in large folios, a touched page maps
	// its whole folio); the anonymous part is the plugin's own heap, stacks and librados
	// buffers.
	fmt.Printf("bench memory detail: first_usage_read_s=%.1f rss_anon_idle_mb=%.1f rss_file_idle_mb=%.1f (binary=%.1f libs=%.1f in_2mib_pages=%.1f) untrimmed_anon_mb=%.1f untrimmed_file_mb=%.1f rss_anon_burst_peak_mb=%.1f rss_anon_after_burst_mb=%.1f rss_file_after_burst_mb=%.1f\n",
		firstRead.Seconds(), idleAnon, idleFile, byFile["binary"], byFile["libs"], byFile["pmd"], baseAnon, baseFile, peak[1], afterAnon, afterFile)
	return fmt.Sprintf("bench memory: rss_idle_mb=%.1f rss_burst_peak_mb=%.1f rss_idle_after_burst_mb=%.1f untrimmed_idle_mb=%.1f idle_ratio=%.2f (idle: backends connected, then %s without a call; burst: %d creates at concurrency %d; untrimmed: --idle-trim-after=0)",
		idle, peak[0], after, base, idle/base, idleWait, sz.burst, sz.concurrency)
}

// waitForUsage waits until the plugin has read every backend's usage, which the quota
// check of a create needs (it answers UNAVAILABLE before), by creating and deleting a
// probe volume, and returns how long that took from the first attempt.
func waitForUsage(t *testing.T, ctx context.Context, p *plugin, backendName, tenant string) time.Duration {
	start := time.Now()
	for {
		rsp, err := p.controller().CreateVolume(ctx, &csi.CreateVolumeRequest{Name: tenant + "-usage-probe",
			Parameters:    map[string]string{backend.ParamBackend: backendName, backend.ParamPVCNamespace: tenant},
			CapacityRange: &csi.CapacityRange{RequiredBytes: volumeBytes}, VolumeCapabilities: []*csi.VolumeCapability{mountCapability}})
		if err == nil {
			took := time.Since(start)
			if _, err := p.controller().DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: rsp.GetVolume().GetVolumeId()}); err != nil {
				t.Fatalf("delete the usage probe: %v", err)
			}
			return took
		}
		if status.Code(err) != codes.Unavailable || time.Since(start) > 15*time.Minute {
			t.Fatalf("create a probe volume once the plugin has read the backends' usage (%s): %v", time.Since(start).Round(time.Second), err)
		}
		time.Sleep(time.Second)
	}
}

// scaleRun is one backend's part: volumes spread round-robin over tenants.
type scaleRun struct {
	p                    *plugin
	store                *store
	sz                   sizes
	kind, backend, label string
	cfg                  config.Backend
	volumes              int
	tenants              []string
	mu                   sync.Mutex
	ids                  map[string]bool // created and not yet deleted
}

func (s *scaleRun) do(t *testing.T, ctx context.Context) string {
	t.Cleanup(func() { s.cleanup(t) })
	create := s.createAll(t, ctx)
	listAll, tokens := s.listAll(t, ctx)
	pg := s.pages(t, ctx, tokens)
	quotaFull, quotaNames := s.quotaReadings(t, ctx)
	deleting := time.Now()
	del := s.deleteAll(t, ctx)
	// DeleteVolume leaves an RBD image in the trash for the mgr to purge: the space is
	// free once the trash has drained, which the line says beside the deletes' own rate.
	drain := ""
	if s.kind == "rbd" {
		took, left := s.store.drained(t, s.tenants, deleting)
		drain = fmt.Sprintf(" trash_drained_s=%.0f", took.Seconds())
		if left > 0 {
			drain = fmt.Sprintf(" trash_drained_s=>%.0f (%d entries left)", took.Seconds(), left)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return fmt.Sprintf("bench scale %s: volumes=%d create_per_s=%.1f list_all_s=%.2f page_p50=%.1fms delete_per_s=%.1f%s quota_read_full_s=%.2f quota_read_s=%.2f"+
		" page_first=%.1fms page_last=%.1fms page_last_first_ratio=%.2f create_per_s_first_tenth=%.1f create_per_s_last_tenth=%.1f create_last_first_ratio=%.2f delete_last_first_ratio=%.2f"+
		" (creates checked against a tenant quota; pages of %d; list_all in pages of %d)",
		s.label, s.volumes, create.all, listAll.Seconds(), ms(pg.p50), del.all, drain, quotaFull.Seconds(), quotaNames.Seconds(),
		ms(pg.first), ms(pg.last), float64(pg.last)/float64(pg.first), create.firstTenth, create.lastTenth, create.lastTenth/create.firstTenth,
		del.lastTenth/del.firstTenth, s.sz.page, s.sz.listPage)
}

// quotaReadings times the tenant quota ledger's readings of the backend, in this process
// with the plugin's code: the first reads every volume (as every reading did before the
// AllocationIndex, and every 12th still does), the next lists the names and reads only new
// volumes. Both must count every volume of the run.
func (s *scaleRun) quotaReadings(t *testing.T, ctx context.Context) (full, names time.Duration) {
	bs, err := registry.Open(&config.Config{Backends: []config.Backend{s.cfg}}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	l := tenant.NewLedger(bs.Controllers, config.Tenants{}, tenant.LedgerOptions{ReadInterval: 30 * time.Minute})
	for _, took := range []*time.Duration{&full, &names} {
		start := time.Now()
		if err := l.Read(ctx, s.backend); err != nil {
			t.Fatalf("quota reading of %s: %v", s.backend, err)
		}
		*took = time.Since(start)
		n := 0
		for _, tn := range s.tenants {
			n += l.Usage(tn).Volumes
		}
		if n != len(s.created()) {
			t.Fatalf("the quota reading of %s counts %d volumes of the run's tenants, want %d", s.backend, n, len(s.created()))
		}
	}
	return full, names
}

func (s *scaleRun) params(i int) map[string]string {
	return map[string]string{backend.ParamBackend: s.backend, backend.ParamPVCNamespace: s.tenants[i%len(s.tenants)]}
}

var mountCapability = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// createAll creates the volumes, concurrency at a time, and returns volumes per second; a
// failed create fails the bench.
func (s *scaleRun) createAll(t *testing.T, ctx context.Context) rates {
	s.ids = map[string]bool{}
	return s.parallel(t, s.volumes, func(i int) error {
		rsp, err := s.p.controller().CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("%s-%d", s.tenants[0], i),
			Parameters: s.params(i), CapacityRange: &csi.CapacityRange{RequiredBytes: volumeBytes},
			VolumeCapabilities: []*csi.VolumeCapability{mountCapability}})
		if err != nil {
			return fmt.Errorf("create %d: %v", i, err)
		}
		s.mu.Lock()
		s.ids[rsp.GetVolume().GetVolumeId()] = true
		s.mu.Unlock()
		return nil
	})
}

func (s *scaleRun) deleteAll(t *testing.T, ctx context.Context) rates {
	ids := s.created()
	return s.parallel(t, len(ids), func(i int) error {
		if _, err := s.p.controller().DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[i]}); err != nil {
			return fmt.Errorf("delete %s: %v", ids[i], err)
		}
		s.mu.Lock()
		delete(s.ids, ids[i])
		s.mu.Unlock()
		return nil
	})
}

func (s *scaleRun) created() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.ids))
	for id := range s.ids {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// rates are operations per second over a whole part, and over its first and its last tenth
// (by completion): an operation whose cost does not grow with the volumes already there runs
// as fast in the last tenth as in the first.
type rates struct{ all, firstTenth, lastTenth float64 }

// parallel runs op(0..n-1) on the configured number of workers and returns operations per
// second; any failure fails the test once all are done.
func (s *scaleRun) parallel(t *testing.T, n int, op func(i int) error) rates {
	var next, failed atomic.Int64
	next.Store(-1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := make([]time.Duration, 0, n)
	start := time.Now()
	for w := 0; w < s.sz.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i < n; i = int(next.Add(1)) {
				if err := op(i); err != nil && failed.Add(1) <= 10 {
					t.Log(err)
				}
				mu.Lock()
				done = append(done, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r := rates{all: float64(n) / time.Since(start).Seconds()}
	if f := failed.Load(); f > 0 {
		t.Fatalf("bench scale %s: %d of %d operations failed (first ones logged above)", s.kind, f, n)
	}
	if tenth := n / 10; tenth > 0 {
		r.firstTenth = float64(tenth) / done[tenth-1].Seconds()
		r.lastTenth = float64(tenth) / (done[n-1] - done[n-1-tenth]).Seconds()
	}
	return r
}

// listAll reads every page of ListVolumes, checks that each volume of the run is listed once,
// and returns the time it took and the page tokens it was given.
func (s *scaleRun) listAll(t *testing.T, ctx context.Context) (time.Duration, []string) {
	want := s.created()
	seen := make(map[string]int, len(want))
	var tokens []string
	token := ""
	start := time.Now()
	for {
		rsp, err := s.p.controller().ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: int32(s.sz.listPage), StartingToken: token})
		if err != nil {
			t.Fatalf("ListVolumes after %d pages: %v", len(tokens), err)
		}
		for _, e := range rsp.GetEntries() {
			seen[e.GetVolume().GetVolumeId()]++
		}
		if token = rsp.GetNextToken(); token == "" {
			break
		}
		tokens = append(tokens, token)
	}
	took := time.Since(start)
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("volume %s listed %d times in the full listing, want once", id, seen[id])
		}
	}
	return took, tokens
}

// pageTimes are the single pages' times: the median of the pages from the start and from up
// to 20 places spread over the listing, and beside it the first page and the last one (each
// the median of 3 reads): a page that costs O(page) takes as long at the end of 10,000
// volumes as at their start.
type pageTimes struct{ p50, first, last time.Duration }

func (s *scaleRun) pages(t *testing.T, ctx context.Context, tokens []string) pageTimes {
	read := func(tok string) time.Duration {
		start := time.Now()
		rsp, err := s.p.controller().ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: int32(s.sz.page), StartingToken: tok})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("ListVolumes page from %q: %v", tok, err)
		}
		if len(rsp.GetEntries()) == 0 || len(rsp.GetEntries()) > s.sz.page {
			t.Errorf("ListVolumes page of %d from %q: %d entries", s.sz.page, tok, len(rsp.GetEntries()))
		}
		return took
	}
	median := func(took []time.Duration) time.Duration {
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		return took[int(math.Ceil(0.5*float64(len(took))))-1]
	}
	starts := []string{""}
	step := max(1, len(tokens)/20)
	for i := 0; i < len(tokens); i += step {
		starts = append(starts, tokens[i])
	}
	var spread []time.Duration
	for _, tok := range starts {
		spread = append(spread, read(tok))
	}
	last := ""
	if len(tokens) > 0 {
		last = tokens[len(tokens)-1]
	}
	var first, end []time.Duration
	for range 3 {
		first, end = append(first, read("")), append(end, read(last))
	}
	return pageTimes{p50: median(spread), first: median(first), last: median(end)}
}

// cleanup deletes what a failed run left, then removes the run's tenants from the storage.
func (s *scaleRun) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if left := s.created(); len(left) > 0 {
		t.Logf("cleanup: deleting the %d volumes the run left", len(left))
		s.deleteAll(t, ctx)
	}
	s.settle(t)
}

// settle removes the tenants' RBD namespaces or CephFS subvolume groups once the storage
// finished the deletes' background work, waiting a bounded time. An RBD part has waited
// for its trash to drain already (trash_drained_s, up to drainWait); a namespace still
// holding entries is left for the mgr (logged; it is empty once the purge is done).
func (s *scaleRun) settle(t *testing.T) {
	if strings.HasPrefix(s.kind, "rbd") {
		s.store.dropNamespaces(t, s.tenants)
		return
	}
	s.store.dropGroups(t, s.tenants)
}
