package check

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

// DefaultProbeTimeout bounds one backend's probe: a hung monitor or array must turn into
// CRITICAL well within the monitoring system's own plugin timeout.
const DefaultProbeTimeout = 8 * time.Second

// probe is one backend's reachability.
type probe struct {
	name, kind string
	err        error
	took       time.Duration
}

// probeAll probes every backend at once, each within timeout.
func probeAll(ctx context.Context, ctrls map[string]backend.Controller, timeout time.Duration) []probe {
	out := make([]probe, 0, len(ctrls))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range ctrls {
		wg.Go(func() {
			p := probe{name: name, kind: c.Kind()}
			start := time.Now()
			p.err = bounded(ctx, timeout, c.Probe)
			p.took = time.Since(start)
			mu.Lock()
			out = append(out, p)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// bounded runs f with a deadline and returns at the deadline even if f does not (a call
// stuck in a C library ignores its context).
func bounded(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %s", timeout)
	}
}

// Backends probes every configured backend. The thresholds apply to the number of
// unreachable backends; by default (-c 0) any unreachable backend is CRITICAL.
func Backends(ctx context.Context, ctrls map[string]backend.Controller, t Thresholds, timeout time.Duration) Result {
	if len(ctrls) == 0 {
		return Unknownf("no backends in the config")
	}
	probes := probeAll(ctx, ctrls, timeout)
	var down []string
	var perf []Perf
	for _, p := range probes {
		up := 1.0
		if p.err != nil {
			up = 0
			down = append(down, fmt.Sprintf("%s (%s): %v", p.name, p.kind, p.err))
		}
		perf = append(perf,
			Perf{Label: p.name + "_up", Value: up, Min: ptr(0), Max: ptr(1)},
			Perf{Label: p.name + "_probe", Value: p.took.Round(time.Millisecond).Seconds(), UOM: "s", Min: ptr(0), Max: ptr(timeout.Seconds())})
	}
	n := float64(len(down))
	perf = append(perf, Perf{Label: "unreachable", Value: n, Warn: t.Warn, Crit: t.Crit, Min: ptr(0), Max: ptr(float64(len(probes)))})
	r := Result{Status: t.Of(n), Perf: perf}
	if len(down) == 0 {
		r.Summary = fmt.Sprintf("%d of %d backends reachable", len(probes), len(probes))
	} else {
		r.Summary = fmt.Sprintf("%d of %d backends unreachable: %s", len(down), len(probes), strings.Join(down, "; "))
	}
	return r
}
