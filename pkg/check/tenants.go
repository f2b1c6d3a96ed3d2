package check

import (
	"context"
	"fmt"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
)

// DefaultTenantThresholds: warn at 80 %, critical at 90 % of a tenant's quota.
var DefaultTenantThresholds = Thresholds{Warn: mustRange("80"), Crit: mustRange("90")}

// Tenants compares each tenant's usage with its quota. The thresholds are percentages of
// the quota (bytes or volume count, whichever is fuller); tenants without a quota are
// reported but never alert. only, when set, checks that one tenant.
func Tenants(ctx context.Context, ctrls map[string]backend.Controller, quotas config.Tenants, t Thresholds, only string) Result {
	vols, err := tenant.Volumes(ctx, ctrls, only)
	if err != nil {
		return Unknownf("cannot add up tenant usage: %v", err)
	}
	usage := tenant.Summarize(vols, quotas)
	res := Result{Status: OK}
	var problems []string
	limited := 0
	for _, u := range usage {
		pct, ok := QuotaPercent(u)
		if !ok {
			continue
		}
		limited++
		st := t.Of(pct)
		res.Status = worse(res.Status, st)
		if st != OK {
			problems = append(problems, fmt.Sprintf("%s at %.0f%% of its quota (%s)", u.Tenant, pct, usageText(u)))
		}
		res.Perf = append(res.Perf, Perf{Label: u.Tenant, Value: round1(pct), UOM: "%", Warn: t.Warn, Crit: t.Crit, Min: ptr(0), Max: ptr(100)})
	}
	summary := fmt.Sprintf("%d tenants, %d with a quota", len(usage), limited)
	if len(problems) > 0 {
		summary = strings.Join(problems, ", ") + "; " + summary
	} else if limited > 0 {
		summary += fmt.Sprintf(", all below %s%% of it", thresholdText(t))
	}
	res.Summary = summary
	return res
}

// QuotaPercent is how full a tenant's quota is, in percent: the fuller of bytes and volume
// count. ok is false for a tenant without a quota.
func QuotaPercent(u *tenant.Usage) (pct float64, ok bool) {
	if q := u.Quota.MaxBytes; q > 0 {
		pct, ok = 100*float64(u.Bytes)/float64(q), true
	}
	if q := u.Quota.MaxVolumes; q > 0 {
		pct, ok = max(pct, 100*float64(u.Volumes)/float64(q)), true
	}
	return pct, ok
}

func usageText(u *tenant.Usage) string {
	var parts []string
	if u.Quota.MaxBytes > 0 {
		parts = append(parts, fmt.Sprintf("%s of %s", HumanBytes(u.Bytes), HumanBytes(u.Quota.MaxBytes)))
	}
	if u.Quota.MaxVolumes > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d volumes", u.Volumes, u.Quota.MaxVolumes))
	}
	return strings.Join(parts, ", ")
}

func thresholdText(t Thresholds) string {
	for _, r := range []*Range{t.Warn, t.Crit} {
		if r != nil {
			return r.Perf()
		}
	}
	return "100"
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func mustRange(s string) *Range {
	r, err := ParseRange(s)
	if err != nil {
		panic(err) // only for the package's own constants
	}
	return r
}
