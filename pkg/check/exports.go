package check

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
)

// DefaultExportThresholds: any stale client is a WARNING.
var DefaultExportThresholds = Thresholds{Warn: mustRange("0")}

// maxListed bounds how many stale clients the status line names.
const maxListed = 5

// Exports reads the client lists of every export on the backends that export to node
// addresses (Isilon). The thresholds apply to the number of stale clients: addresses no
// publish accounts for, which can reach data no pod of theirs uses.
func Exports(ctx context.Context, ctrls map[string]backend.Controller, t Thresholds) Result {
	names := make([]string, 0, len(ctrls))
	for n, c := range ctrls {
		if _, ok := c.(backend.ExportAuditor); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return Result{Status: OK, Summary: "no configured backend exports volumes to clients"}
	}
	res := Result{}
	var stale []string
	var failed []string
	exports := 0
	for _, n := range names {
		list, err := ctrls[n].(backend.ExportAuditor).ExportClients(ctx)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", n, err))
			continue
		}
		clients, staleHere := 0, 0
		for _, e := range list {
			clients += len(e.Clients)
			staleHere += len(e.Stale)
			for _, cl := range e.Stale {
				stale = append(stale, fmt.Sprintf("%s on export %d (%s)", cl, e.ExportID, e.Volume))
			}
		}
		exports += len(list)
		res.Perf = append(res.Perf,
			Perf{Label: n + "_exports", Value: float64(len(list)), Min: ptr(0)},
			Perf{Label: n + "_clients", Value: float64(clients), Min: ptr(0)},
			Perf{Label: n + "_stale", Value: float64(staleHere), Warn: t.Warn, Crit: t.Crit, Min: ptr(0)})
	}
	if len(failed) > 0 {
		res.Status = Unknown
	}
	res.Status = worse(res.Status, t.Of(float64(len(stale))))
	res.Summary = exportSummary(exports, len(names), stale, failed)
	return res
}

func exportSummary(exports, backends int, stale, failed []string) string {
	var parts []string
	if len(failed) > 0 {
		parts = append(parts, "cannot read exports of "+strings.Join(failed, "; "))
	}
	if len(stale) > 0 {
		listed := stale[:min(len(stale), maxListed)]
		s := fmt.Sprintf("%d stale clients: %s", len(stale), strings.Join(listed, ", "))
		if len(stale) > maxListed {
			s += fmt.Sprintf(" and %d more (shipholdctl gc lists them)", len(stale)-maxListed)
		}
		parts = append(parts, s)
	}
	parts = append(parts, fmt.Sprintf("%d exports on %d backends", exports, backends))
	return strings.Join(parts, "; ")
}
