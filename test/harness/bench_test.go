package harness

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// failures records Errorf instead of failing, to check what Run reports.
type failures struct {
	testing.TB
	msgs []string
}

func (f *failures) Errorf(format string, args ...any) {
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

// fakeSide counts operations and the most it had in flight; with failCreates, the creates
// of names ending in -3 (one serial, one burst) fail.
type fakeSide struct {
	creates, deletes, inFlight, maxInFlight atomic.Int64
	failCreates                             bool
	mu                                      sync.Mutex
	names                                   []string
}

func (f *fakeSide) side() BenchSide {
	enter := func() func() {
		n := f.inFlight.Add(1)
		for m := f.maxInFlight.Load(); n > m && !f.maxInFlight.CompareAndSwap(m, n); m = f.maxInFlight.Load() {
		}
		time.Sleep(time.Millisecond)
		return func() { f.inFlight.Add(-1) }
	}
	return BenchSide{
		Create: func(ctx context.Context, name string) (string, error) {
			defer enter()()
			f.creates.Add(1)
			f.mu.Lock()
			f.names = append(f.names, name)
			f.mu.Unlock()
			if f.failCreates && strings.HasSuffix(name, "-3") {
				return "", errors.New("injected")
			}
			return "h-" + name, nil
		},
		Delete: func(ctx context.Context, h string) error {
			defer enter()()
			if !strings.HasPrefix(h, "h-") {
				return fmt.Errorf("delete got handle %q", h)
			}
			f.deletes.Add(1)
			return nil
		},
	}
}

// TestBenchMeasuresBothSidesAlike: both sides do the same number of creates and deletes at
// the same concurrency, storage settles before every timed phase, the five lines keep
// their documented format, and a failed operation shows in errors= and fails the run.
func TestBenchMeasuresBothSidesAlike(t *testing.T) {
	ours, raw := &fakeSide{failCreates: true}, &fakeSide{}
	settles := 0
	b := &Bench{Kind: "fake", Sizes: BenchSizes{Serial: 5, Burst: 16, Concurrency: 4, Bytes: 1 << 30},
		Driver: ours.side(), Raw: raw.side(), Settle: func(testing.TB) { settles++ }, Suffix: " target=simulator"}
	f := &failures{TB: t}
	lines := b.Run(f, context.Background())
	latency := regexp.MustCompile(`^bench fake (create|delete|pair): p50=[0-9.]+ms p99=[0-9.]+ms raw_p50=[0-9.]+ms raw_p99=[0-9.]+ms ratio=[0-9.]+ errors=(\d+) target=simulator$`)
	rate := regexp.MustCompile(`^bench fake burst4 (create|delete): volumes/s=[0-9.]+ raw_volumes/s=[0-9.]+ ratio=[0-9.]+ round_ratios=[0-9.]+-[0-9.]+ errors=(\d+) target=simulator$`)
	want := []struct {
		re   *regexp.Regexp
		op   string
		errs string
	}{{latency, "create", "1"}, {latency, "delete", "0"}, {latency, "pair", "1"}, {rate, "create", "1"}, {rate, "delete", "0"}}
	if len(lines) != len(want) {
		t.Fatalf("lines: %q", lines)
	}
	for i, w := range want {
		m := w.re.FindStringSubmatch(lines[i])
		if m == nil || m[1] != w.op || m[2] != w.errs {
			t.Errorf("line %d = %q, want %s with errors=%s", i, lines[i], w.op, w.errs)
		}
	}
	if settles != 4 {
		t.Errorf("settled %d times, want before the serial run and before and after each side's burst (4)", settles)
	}
	for _, s := range []*fakeSide{ours, raw} {
		if c := s.creates.Load(); c != 5+16 {
			t.Errorf("creates = %d, want 21 on each side", c)
		}
		if m := s.maxInFlight.Load(); m != 4 {
			t.Errorf("at most %d in flight, want the concurrency 4", m)
		}
	}
	if d := ours.deletes.Load(); d != 5+16-2 {
		t.Errorf("driver deletes = %d: the two volumes whose create failed must not be deleted", d)
	}
	if len(f.msgs) != 1 || !strings.Contains(f.msgs[0], "2 operations failed") {
		t.Errorf("failures reported: %q", f.msgs)
	}
}

// TestBenchRunBurstsTimesOnlyTheBursts: RunBursts makes no serial pairs, prints the two
// burst lines in Run's format, and a failed operation shows in errors= and fails the run.
func TestBenchRunBurstsTimesOnlyTheBursts(t *testing.T) {
	ours, raw := &fakeSide{failCreates: true}, &fakeSide{}
	settles := 0
	b := &Bench{Kind: "fake", Sizes: BenchSizes{Serial: 5, Burst: 16, Concurrency: 4, Bytes: 1 << 30},
		Driver: ours.side(), Raw: raw.side(), Settle: func(testing.TB) { settles++ }, Suffix: " latency=50ms"}
	f := &failures{TB: t}
	lines := b.RunBursts(f, context.Background())
	rate := regexp.MustCompile(`^bench fake burst4 (create|delete): volumes/s=[0-9.]+ raw_volumes/s=[0-9.]+ ratio=[0-9.]+ round_ratios=[0-9.]+-[0-9.]+ errors=(\d+) latency=50ms$`)
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	for i, w := range []struct{ op, errs string }{{"create", "1"}, {"delete", "0"}} {
		if m := rate.FindStringSubmatch(lines[i]); m == nil || m[1] != w.op || m[2] != w.errs {
			t.Errorf("line %d = %q, want %s with errors=%s", i, lines[i], w.op, w.errs)
		}
	}
	for _, s := range []*fakeSide{ours, raw} {
		if c := s.creates.Load(); c != 16 {
			t.Errorf("creates = %d, want the burst's 16 on each side and no serial pair", c)
		}
	}
	if settles != 3 {
		t.Errorf("settled %d times, want before and after each side's burst (3)", settles)
	}
	if len(f.msgs) != 1 || !strings.Contains(f.msgs[0], "1 operations failed") {
		t.Errorf("failures reported: %q", f.msgs)
	}
}

// fakeClock is a clock only the fakes move.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) read() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestBenchTimesBackgroundDeletesOnBothSides: when the storage finishes deletes after
// answering them (the CephFS purge), a burst's deletes are timed until the storage has
// settled. One side answers its deletes at once and leaves their work to the background,
// the other does the same work before answering: the same work, the same rate. Timed only
// up to the last answer, the first side's rate was infinite (ratio +Inf, or 10.5 and 0.01
// on a real cluster, depending on how much purge raced the removes).
func TestBenchTimesBackgroundDeletesOnBothSides(t *testing.T) {
	const work = 10 * time.Millisecond // what one delete costs the storage
	clock := &fakeClock{now: time.Unix(0, 0)}
	var backlog atomic.Int64
	deferred := BenchSide{
		Create: func(context.Context, string) (string, error) { clock.advance(work); return "h", nil },
		Delete: func(context.Context, string) error { backlog.Add(1); return nil },
	}
	synchronous := BenchSide{
		Create: deferred.Create,
		Delete: func(context.Context, string) error { clock.advance(work); return nil },
	}
	settles := 0
	settle := func(testing.TB) {
		settles++
		clock.advance(time.Duration(backlog.Swap(0)) * work)
	}
	b := &Bench{Kind: "fake", Sizes: BenchSizes{Serial: 2, Burst: 16, Concurrency: 4, Bytes: 1 << 30},
		Driver: deferred, Raw: synchronous, Settle: settle, BackgroundDeletes: true, now: clock.read}
	lines := b.Run(t, context.Background())
	re := regexp.MustCompile(`^bench fake burst4 delete: volumes/s=([0-9.]+|\+Inf) raw_volumes/s=([0-9.]+) ratio=([0-9.]+|\+Inf) round_ratios=\S+ errors=0$`)
	m := re.FindStringSubmatch(lines[4])
	if m == nil {
		t.Fatalf("delete line %q", lines[4])
	}
	if m[1] != "100.0" || m[2] != "100.0" || m[3] != "1.00" {
		t.Errorf("%s: want both sides at 16 deletes in 16 x 10ms (100 volumes/s), ratio 1.00", lines[4])
	}
	if settles != 4 {
		t.Errorf("settled %d times, want before the serial run, before the bursts and after each side's deletes (4)", settles)
	}
}

// TestBenchBurstsCancelDrift: the storage slows down through a run (RBD: the mgr's purges
// and the OSD's compactions; one burst of 128 lasts under a second), so a side timed
// later than the other is timed on a slower storage. Both sides here do the same work;
// every operation costs 1 ms more than the one before. Timed driver first, then raw, the
// driver came out 2.94 times faster on creates and 1.98 on deletes; timed driver, raw, raw,
// driver (Rounds 2), both sides meet the same storage and the ratio is 1.
func TestBenchBurstsCancelDrift(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	var ops atomic.Int64
	work := func() { clock.advance(time.Duration(ops.Add(1)) * time.Millisecond) }
	side := BenchSide{
		Create: func(context.Context, string) (string, error) { work(); return "h", nil },
		Delete: func(context.Context, string) error { work(); return nil },
	}
	settles := 0
	b := &Bench{Kind: "fake", Sizes: BenchSizes{Serial: 2, Burst: 16, Concurrency: 4, Rounds: 2, Bytes: 1 << 30},
		Driver: side, Raw: side, Settle: func(testing.TB) { settles++ }, now: clock.read}
	lines := b.Run(t, context.Background())
	re := regexp.MustCompile(`^bench fake burst4 (create|delete): volumes/s=[0-9.]+ raw_volumes/s=[0-9.]+ ratio=([0-9.]+) round_ratios=([0-9.]+)-([0-9.]+) errors=0$`)
	for _, l := range lines[3:] {
		m := re.FindStringSubmatch(l)
		if m == nil || m[2] != "1.00" {
			t.Errorf("%s: want ratio=1.00 for two sides doing the same work", l)
			continue
		}
		// Each round alone is timed on drifting storage: the side timed first in it is
		// faster, so one round's ratio is over 1 and the other's under it.
		if lo, hi := parseFloat(t, m[3]), parseFloat(t, m[4]); lo >= 1 || hi <= 1 {
			t.Errorf("%s: want round_ratios from under 1 to over 1 (each round alone sees the drift)", l)
		}
	}
	if n := ops.Load(); n != 2*(2*2+2*2*16) {
		t.Errorf("%d operations, want each side's 2 serial pairs and 2 bursts of 16 creates and 16 deletes", n)
	}
	if settles != 6 {
		t.Errorf("settled %d times, want before the serial run, before the bursts and after each of the 4 bursts (6)", settles)
	}
}

// tenantSide is a storage whose creates cost first more while its tenant has no volume
// (the driver makes the tenant's identity with its first volume), on a fake clock; live
// counts the volumes it holds, most the most it held at once.
type tenantSide struct {
	clock       *fakeClock
	first, each time.Duration
	live, most  int
}

func (s *tenantSide) side() BenchSide {
	return BenchSide{
		Create: func(ctx context.Context, name string) (string, error) {
			if s.live == 0 {
				s.clock.advance(s.first)
			}
			s.clock.advance(s.each)
			s.live++
			s.most = max(s.most, s.live)
			return name, nil
		},
		Delete: func(ctx context.Context, h string) error {
			s.clock.advance(s.each)
			s.live--
			return nil
		},
	}
}

// TestBenchKeptTimesATenantsNthVolume: Run's pairs make and remove the tenant's only
// volume, so a driver whose first volume costs more is timed at that cost; RunKept keeps a
// volume on each side while its pairs run, so its lines time the n-th volume, and removes
// the kept volumes at the end.
func TestBenchKeptTimesATenantsNthVolume(t *testing.T) {
	clock := &fakeClock{}
	ours := &tenantSide{clock: clock, first: 5 * time.Millisecond, each: 10 * time.Millisecond}
	raw := &tenantSide{clock: clock, each: 10 * time.Millisecond}
	b := &Bench{Kind: "fake", Sizes: BenchSizes{Serial: 5, Burst: 1, Concurrency: 1, Bytes: 1}, Driver: ours.side(), Raw: raw.side(),
		Settle: func(testing.TB) {}, now: clock.read}
	first := b.Run(t, context.Background())
	if !strings.HasPrefix(first[0], "bench fake create: p50=15.0ms") || !strings.Contains(first[0], "ratio=1.50") {
		t.Errorf("Run's create line %q: want the first volume's 15 ms, ratio 1.50", first[0])
	}
	kept := b.RunKept(t, context.Background())
	want := []string{"bench fake kept create: p50=10.0ms", "bench fake kept delete: p50=10.0ms", "bench fake kept pair: p50=20.0ms"}
	if len(kept) != len(want) {
		t.Fatalf("kept lines %q", kept)
	}
	for i, w := range want {
		if !strings.HasPrefix(kept[i], w) || !strings.Contains(kept[i], "ratio=1.00 errors=0") {
			t.Errorf("line %d = %q, want %s ... ratio=1.00 errors=0", i, kept[i], w)
		}
	}
	for name, s := range map[string]*tenantSide{"driver": ours, "raw": raw} {
		if s.live != 0 || s.most != 2 {
			t.Errorf("%s side: %d volumes left, at most %d at once; want the kept one beside each pair's, none left", name, s.live, s.most)
		}
	}
}

// purgingStorage is one storage under both sides: a delete leaves purge work that runs in
// the background and that the next create pays for whatever is left of it, as the mgr's
// purge of a removed subvolume slows the next create. A side whose delete does more after
// the remove (postRemove) lets the purge finish before it answers.
type purgingStorage struct {
	clock       *fakeClock
	each, purge time.Duration
	left        time.Duration // purge work not yet done
}

func (s *purgingStorage) side(postRemove time.Duration) BenchSide {
	return BenchSide{
		Create: func(ctx context.Context, name string) (string, error) {
			s.clock.advance(s.left + s.each)
			s.left = 0
			return name, nil
		},
		Delete: func(ctx context.Context, h string) error {
			s.clock.advance(s.each + postRemove)
			s.left = max(s.purge-postRemove, 0)
			return nil
		},
	}
}

// TestBenchSerialPairsTakeTurnsFirst: a serial pair's create is timed right after the
// other side's delete when the sides always run in the same order, so a side whose delete
// leaves the storage busy slows the other side's creates and not its own: the driver's
// create read 1.27x raw in one run and 1.10x in the next with the sides taking turns. The
// pairs take turns first; equal creates read 1.00, and the driver's slower delete still
// reads as slower.
func TestBenchSerialPairsTakeTurnsFirst(t *testing.T) {
	clock := &fakeClock{}
	st := &purgingStorage{clock: clock, each: 10 * time.Millisecond, purge: 6 * time.Millisecond}
	b := &Bench{Kind: "fake", Sizes: BenchSizes{Serial: 6, Burst: 1, Concurrency: 1, Bytes: 1},
		Driver: st.side(6 * time.Millisecond), Raw: st.side(0), Settle: func(testing.TB) {}, now: clock.read}
	lines := b.Run(t, context.Background())
	if !strings.Contains(lines[0], "ratio=1.00") {
		t.Errorf("create line %q: want ratio=1.00 (both sides' creates cost the same)", lines[0])
	}
	if !strings.HasPrefix(lines[1], "bench fake delete: p50=16.0ms") || !strings.Contains(lines[1], "ratio=1.60") {
		t.Errorf("delete line %q: want the driver's 16 ms against 10 ms, ratio 1.60", lines[1])
	}
	kept := b.RunKept(t, context.Background())
	if !strings.Contains(kept[0], "ratio=1.00") {
		t.Errorf("kept create line %q: want ratio=1.00", kept[0])
	}
}

func parseFloat(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return f
}
