package harness

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// BenchSizes is what a benchmark does: serial create/delete pairs, then Rounds bursts per
// side of Burst creates and Burst deletes, Concurrency at a time, of Bytes-sized volumes.
// Both sides of a comparison use the same sizes. Rounds 0 is one burst per side.
type BenchSizes struct {
	Serial, Burst, Concurrency, Rounds int
	Bytes                              int64
}

// BenchSizesFromEnv reads SHIPHOLD_BENCH_SERIAL (default 50), SHIPHOLD_BENCH_BURST (128),
// SHIPHOLD_BENCH_CONCURRENCY (32), SHIPHOLD_BENCH_ROUNDS (4) and SHIPHOLD_BENCH_BYTES (1 GiB).
func BenchSizesFromEnv(t testing.TB) BenchSizes {
	t.Helper()
	n := func(key string, def int64) int64 {
		v := os.Getenv(key)
		if v == "" {
			return def
		}
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil || i <= 0 {
			t.Fatalf("%s=%q: want a positive integer", key, v)
		}
		return i
	}
	return BenchSizes{
		Serial:      int(n("SHIPHOLD_BENCH_SERIAL", 50)),
		Burst:       int(n("SHIPHOLD_BENCH_BURST", 128)),
		Concurrency: int(n("SHIPHOLD_BENCH_CONCURRENCY", 32)),
		Rounds:      int(n("SHIPHOLD_BENCH_ROUNDS", 4)),
		Bytes:       n("SHIPHOLD_BENCH_BYTES", 1<<30),
	}
}

// BenchSide makes and removes one volume of the given size: through the driver's gRPC
// endpoint, or with the raw storage calls. Create returns what Delete needs.
type BenchSide struct {
	Create func(ctx context.Context, name string) (string, error)
	Delete func(ctx context.Context, handle string) error
}

// DriverSide creates and deletes volumes through the driver's gRPC endpoint, as the
// external-provisioner does: CreateVolume with the StorageClass parameters, DeleteVolume by ID.
func (d *Driver) DriverSide(params map[string]string, capability *csi.VolumeCapability, bytes int64) BenchSide {
	cc := d.Controller()
	return BenchSide{
		Create: func(ctx context.Context, name string) (string, error) {
			rsp, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params,
				CapacityRange: &csi.CapacityRange{RequiredBytes: bytes}, VolumeCapabilities: []*csi.VolumeCapability{capability}})
			return rsp.GetVolume().GetVolumeId(), err
		},
		Delete: func(ctx context.Context, id string) error {
			_, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			return err
		},
	}
}

// Bench compares the driver with the raw storage calls doing the same work. Settle is
// called before the serial run and before every burst, and must return only when the
// storage has finished the background work of the deletes before it (CephFS purge queue,
// RBD trash), so no phase is timed under another's backlog.
type Bench struct {
	Kind        string
	Sizes       BenchSizes
	Driver, Raw BenchSide
	Settle      func(t testing.TB)
	// BackgroundDeletes says the storage finishes a delete after answering it (CephFS: the
	// mgr moves the subvolume to its trash and purges it in threads of its own, whose MDS
	// requests hold the trash directory's locks until the MDS journals them, up to its 5 s
	// tick; a remove that waits on them takes seconds instead of milliseconds). A burst's
	// deletes are then timed until Settle returns after them: both sides are timed for the
	// whole delete, not for how much of their purge happened to collide with their removes.
	BackgroundDeletes bool
	// Suffix is added to every line (the Isilon target and latency).
	Suffix string
	// now is the clock (time.Now when nil); tests give one that only their fakes move.
	now func() time.Time
}

func (b *Bench) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// serial holds one side's serial latencies.
type serial struct {
	create, delete, pair []time.Duration
	createErrs, delErrs  int
}

// failed is how many of the side's serial operations failed.
func (s *serial) failed() int { return s.createErrs + s.delErrs }

// Run times both sides and prints the five bench lines; any failed operation fails the
// test after the lines are printed.
func (b *Bench) Run(t testing.TB, ctx context.Context) []string {
	t.Helper()
	b.Settle(t)
	serialOurs, serialRaw := b.serialPairs(t, ctx, "")
	lines := b.serialLines("", serialOurs, serialRaw)
	burstLines, burstErrs := b.bursts(t, ctx)
	return b.report(t, append(lines, burstLines...),
		serialOurs.failed()+serialRaw.failed()+burstErrs)
}

// RunBursts times only the bursts of Run and prints their two lines (burst creates, burst
// deletes); any failed operation fails the test after the lines are printed.
func (b *Bench) RunBursts(t testing.TB, ctx context.Context) []string {
	t.Helper()
	lines, errs := b.bursts(t, ctx)
	return b.report(t, lines, errs)
}

// report prints lines and fails the test, after them, if any of errs operations failed.
func (b *Bench) report(t testing.TB, lines []string, errs int) []string {
	t.Helper()
	for _, l := range lines {
		fmt.Println(l)
	}
	if errs > 0 {
		t.Errorf("bench %s: %d operations failed (logged above); the figures do not measure what they say", b.Kind, errs)
	}
	return lines
}

// bursts times Sizes.Rounds bursts per side and returns the burst create and delete lines
// and the number of failed operations.
func (b *Bench) bursts(t testing.TB, ctx context.Context) ([]string, int) {
	t.Helper()
	b.Settle(t)
	// The bursts run driver, raw, raw, driver, ...: one burst of 128 RBD volumes lasts under
	// a second, and the storage's pace drifts through a run (the mgr's purges, the OSD's
	// compactions), so a side always timed second is timed on other storage. The order
	// cancels a steady drift; each side's rate is all its volumes over all its time.
	ours := &bursts{side: b.Driver, prefix: "burst"}
	raw := &bursts{side: b.Raw, prefix: "raw-burst"}
	for r := 0; r < max(b.Sizes.Rounds, 1); r++ {
		order := []*bursts{ours, raw}
		if r%2 == 1 {
			order = []*bursts{raw, ours}
		}
		for _, s := range order {
			b.burst(t, ctx, s, r)
			if !b.BackgroundDeletes {
				b.Settle(t)
			}
		}
	}
	return []string{
		b.rateLine("create", ours.rate(ours.create), raw.rate(raw.create), roundRatios(ours, raw, 0), ours.errs[0]+raw.errs[0]),
		b.rateLine("delete", ours.rate(ours.delete), raw.rate(raw.delete), roundRatios(ours, raw, 1), ours.errs[1]+raw.errs[1]),
	}, ours.errs[0] + ours.errs[1] + raw.errs[0] + raw.errs[1]
}

// RunKept times serial pairs as Run does while each side keeps one more volume in the
// place the pairs use (the bench's tenant) throughout, and prints the "kept create",
// "kept delete" and "kept pair" lines. Run's pairs each make and remove the tenant's only
// volume, so the driver's create does the one-time work of a tenant's first volume (its
// cephx identity, which its last delete removes); these time a tenant's n-th volume. The
// kept volumes are deleted at the end; any failure fails the run, as in Run.
func (b *Bench) RunKept(t testing.TB, ctx context.Context) []string {
	t.Helper()
	var kept []func() error
	for _, s := range []struct {
		side BenchSide
		name string
	}{{b.Driver, "kept"}, {b.Raw, "raw-kept"}} {
		h, err := s.side.Create(ctx, s.name)
		if err != nil {
			t.Fatalf("bench %s: create the kept volume %s: %v", b.Kind, s.name, err)
		}
		kept = append(kept, func() error { return s.side.Delete(ctx, h) })
	}
	b.Settle(t)
	ours, raw := b.serialPairs(t, ctx, "kept-")
	for _, drop := range kept {
		if err := drop(); err != nil {
			t.Errorf("bench %s: delete a kept volume: %v", b.Kind, err)
		}
	}
	return b.report(t, b.serialLines("kept ", ours, raw), ours.failed()+raw.failed())
}

// serialPairs runs Sizes.Serial create/delete pairs per side, the sides interleaved so
// that drift in the cluster weighs on both alike; names start with prefix.
func (b *Bench) serialPairs(t testing.TB, ctx context.Context, prefix string) (ours, raw *serial) {
	ours, raw = &serial{}, &serial{}
	for i := 0; i < b.Sizes.Serial; i++ {
		// The sides take turns first, as the bursts do: a create is slowed by what the
		// delete before it left the storage doing (the mgr's purge of a removed subvolume),
		// and with one order a side's creates always follow the other side's deletes.
		order := []func(){
			func() { b.pair(t, ctx, b.Driver, fmt.Sprintf("%sbench-%d", prefix, i), ours) },
			func() { b.pair(t, ctx, b.Raw, fmt.Sprintf("%sraw-%d", prefix, i), raw) },
		}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, pair := range order {
			pair()
		}
	}
	return ours, raw
}

// serialLines are the create, delete and pair lines of serial pairs, ops prefixed.
func (b *Bench) serialLines(prefix string, ours, raw *serial) []string {
	return []string{
		b.latencyLine(prefix+"create", ours.create, raw.create, ours.createErrs+raw.createErrs),
		b.latencyLine(prefix+"delete", ours.delete, raw.delete, ours.delErrs+raw.delErrs),
		b.latencyLine(prefix+"pair", ours.pair, raw.pair, ours.createErrs+raw.createErrs+ours.delErrs+raw.delErrs),
	}
}

// pair creates and deletes one volume on one side, timing each.
func (b *Bench) pair(t testing.TB, ctx context.Context, side BenchSide, name string, s *serial) {
	start := b.clock()
	h, err := side.Create(ctx, name)
	created := b.clock().Sub(start)
	if err != nil {
		s.createErrs++
		t.Logf("create %s: %v", name, err)
		return
	}
	start = b.clock()
	err = side.Delete(ctx, h)
	deleted := b.clock().Sub(start)
	if err != nil {
		s.delErrs++
		t.Logf("delete %s: %v", name, err)
		return
	}
	s.create = append(s.create, created)
	s.delete = append(s.delete, deleted)
	s.pair = append(s.pair, created+deleted)
}

// bursts adds up one side's bursts: their volumes, their time, their failures.
type bursts struct {
	side           BenchSide
	prefix         string // of the volume names
	volumes        int
	create, delete time.Duration
	errs           [2]int
	rounds         [2][]float64 // each round's create and delete rate
}

// rate is the side's volumes over the time given.
func (s *bursts) rate(d time.Duration) float64 { return ratePerSecond(s.volumes, d) }

func ratePerSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return math.Inf(1)
	}
	return float64(n) / d.Seconds()
}

// roundRatios is the lowest and highest ratio of one round's rates (op 0 creates, 1
// deletes), ours over raw's of the same round: how far one burst of under a second can
// stray from the ratio of the whole (the storage's compactions and purges land in some
// rounds and not others).
func roundRatios(ours, raw *bursts, op int) [2]float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for r := range min(len(ours.rounds[op]), len(raw.rounds[op])) {
		q := ratio(ours.rounds[op][r], raw.rounds[op][r])
		lo, hi = math.Min(lo, q), math.Max(hi, q)
	}
	if math.IsInf(lo, 1) {
		return [2]float64{}
	}
	return [2]float64{lo, hi}
}

// burst creates Burst volumes of one side Concurrency at a time, then deletes them the same
// way, and adds both times and the failures of each to the side's. With BackgroundDeletes the
// deletes are timed until the storage has settled after them.
func (b *Bench) burst(t testing.TB, ctx context.Context, into *bursts, round int) {
	side := into.side
	handles := make([]string, b.Sizes.Burst)
	created, createErrs := b.parallel(t, nil, func(i int) error {
		h, err := side.Create(ctx, fmt.Sprintf("%s%d-%d", into.prefix, round, i))
		handles[i] = h
		return err
	})
	var settle func()
	if b.BackgroundDeletes {
		settle = func() { b.Settle(t) }
	}
	deleted, deleteErrs := b.parallel(t, settle, func(i int) error {
		if handles[i] == "" {
			return nil // its create failed and was counted
		}
		return side.Delete(ctx, handles[i])
	})
	into.rounds[0] = append(into.rounds[0], ratePerSecond(b.Sizes.Burst, created))
	into.rounds[1] = append(into.rounds[1], ratePerSecond(b.Sizes.Burst, deleted))
	into.volumes += b.Sizes.Burst
	into.create += created
	into.delete += deleted
	into.errs[0] += createErrs
	into.errs[1] += deleteErrs
}

// parallel runs op for 0..Burst-1 on Concurrency workers, then finish if not nil, and
// answers how long that took and how many ops failed (a rate counts every operation).
func (b *Bench) parallel(t testing.TB, finish func(), op func(i int) error) (time.Duration, int) {
	var next, failed atomic.Int64
	next.Store(-1)
	var wg sync.WaitGroup
	start := b.clock()
	for w := 0; w < b.Sizes.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i < b.Sizes.Burst; i = int(next.Add(1)) {
				if err := op(i); err != nil {
					failed.Add(1)
					t.Logf("burst %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	if finish != nil {
		finish()
	}
	return b.clock().Sub(start), int(failed.Load())
}

func (b *Bench) latencyLine(op string, ours, raw []time.Duration, errs int) string {
	p50, rawP50 := percentile(ours, 0.5), percentile(raw, 0.5)
	return fmt.Sprintf("bench %s %s: p50=%s p99=%s raw_p50=%s raw_p99=%s ratio=%.2f errors=%d%s",
		b.Kind, op, ms(p50), ms(percentile(ours, 0.99)), ms(rawP50), ms(percentile(raw, 0.99)), ratio(float64(p50), float64(rawP50)), errs, b.Suffix)
}

func (b *Bench) rateLine(op string, ours, raw float64, rounds [2]float64, errs int) string {
	return fmt.Sprintf("bench %s burst%d %s: volumes/s=%.1f raw_volumes/s=%.1f ratio=%.2f round_ratios=%.2f-%.2f errors=%d%s",
		b.Kind, b.Sizes.Concurrency, op, ours, raw, ratio(ours, raw), rounds[0], rounds[1], errs, b.Suffix)
}

// percentile is the nearest-rank percentile; NaN-free: no samples give 0.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(math.Ceil(p*float64(len(s))))-1]
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// WaitFor polls done every 250ms until it reports true, failing the test after bound with
// what it last said.
func WaitFor(t testing.TB, what string, bound time.Duration, done func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ok, state := done()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %s: %s", what, bound, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
