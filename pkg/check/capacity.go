package check

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

// Capacity compares each backend's free bytes (what Capacity reports for new volumes of its
// default StorageClass parameters) with the thresholds, which must be minimum-free ranges
// such as -w 500Gi: -c 100Gi: (alert below). A backend whose free space cannot be read is
// UNKNOWN here; the backends check is the one that alarms on reachability.
func Capacity(ctx context.Context, ctrls map[string]backend.Controller, t Thresholds, timeout time.Duration) Result {
	if len(ctrls) == 0 {
		return Unknownf("no backends in the config")
	}
	for _, r := range []*Range{t.Warn, t.Crit} {
		if r != nil && !r.Inside && r.Start == 0 && !math.IsInf(r.End, 1) {
			return Unknownf("capacity threshold %q would alert when free space is above it; thresholds are minimum free space: write %s: (with the colon)", r, r)
		}
	}
	type reading struct {
		name  string
		avail int64
		err   error
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var readings []reading
	for name, c := range ctrls {
		wg.Go(func() {
			rd := reading{name: name}
			rd.err = bounded(ctx, timeout, func(ctx context.Context) (err error) {
				rd.avail, err = c.Capacity(ctx, nil)
				return err
			})
			mu.Lock()
			readings = append(readings, rd)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(readings, func(i, j int) bool { return readings[i].name < readings[j].name })

	res := Result{Status: OK}
	var problems, fine []string
	for _, rd := range readings {
		if rd.err != nil {
			res.Status = worse(res.Status, Unknown)
			problems = append(problems, fmt.Sprintf("%s: free space unknown: %v", rd.name, rd.err))
			continue
		}
		st := t.Of(float64(rd.avail))
		res.Status = worse(res.Status, st)
		desc := fmt.Sprintf("%s %s free", rd.name, HumanBytes(rd.avail))
		if st != OK {
			limit := t.Crit
			if st == Warning {
				limit = t.Warn
			}
			problems = append(problems, fmt.Sprintf("%s (%s below %s)", desc, st, limit))
		} else {
			fine = append(fine, desc)
		}
		res.Perf = append(res.Perf, Perf{Label: rd.name + "_free", Value: float64(rd.avail), UOM: "B", Warn: t.Warn, Crit: t.Crit, Min: ptr(0)})
	}
	res.Summary = strings.Join(append(problems, fine...), ", ")
	return res
}

// HumanBytes writes a byte count in binary units, as the admin CLI does.
func HumanBytes(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(b)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
