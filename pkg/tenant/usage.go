// Package tenant answers what a hosted application holds across every backend: its
// volumes, their total size, and how that compares with its quota.
package tenant

import (
	"context"
	"fmt"
	"sort"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

// Volumes lists the volumes of tenant ("" = every tenant) on every backend, sorted by ID.
func Volumes(ctx context.Context, controllers map[string]backend.Controller, tenant string) ([]*backend.Volume, error) {
	names := make([]string, 0, len(controllers))
	for name := range controllers {
		names = append(names, name)
	}
	sort.Strings(names)
	var all []*backend.Volume
	for _, name := range names {
		vols, err := controllers[name].ListVolumes(ctx, tenant)
		if err != nil {
			return nil, fmt.Errorf("listing volumes on backend %q: %w", name, err)
		}
		all = append(all, vols...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID.String() < all[j].ID.String() })
	return all, nil
}

// Usage is what one tenant holds, in total and per backend.
type Usage struct {
	Tenant    string
	Volumes   int
	Bytes     int64
	ByBackend map[string]BackendUsage
	Quota     config.TenantQuota
	// InFlight of Volumes are being created (the ledger's reservations).
	InFlight int
}

// BackendUsage is a tenant's share of one backend.
type BackendUsage struct {
	Volumes int
	Bytes   int64
}

// Summarize adds up volumes per tenant, with each tenant's quota from the config.
func Summarize(vols []*backend.Volume, quotas config.Tenants) []*Usage {
	by := map[string]*Usage{}
	for _, v := range vols {
		u, ok := by[v.ID.Tenant]
		if !ok {
			u = &Usage{Tenant: v.ID.Tenant, ByBackend: map[string]BackendUsage{}, Quota: quotas.QuotaFor(v.ID.Tenant)}
			by[v.ID.Tenant] = u
		}
		u.Volumes++
		u.Bytes += v.CapacityBytes
		b := u.ByBackend[v.ID.Backend]
		b.Volumes++
		b.Bytes += v.CapacityBytes
		u.ByBackend[v.ID.Backend] = b
	}
	out := make([]*Usage, 0, len(by))
	for _, u := range by {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out
}

// Admits says why adding a volume of bytes would pass the tenant's quota, "" when it fits.
func (u *Usage) Admits(bytes int64) string { return u.admits(1, bytes) }

// admits says why adding volumes and bytes would pass the tenant's quota, "" when they fit.
func (u *Usage) admits(volumes int, bytes int64) string {
	q := u.Quota
	making := ""
	if u.InFlight > 0 {
		making = fmt.Sprintf(" (%d of them being created)", u.InFlight)
	}
	if volumes > 0 && q.MaxVolumes > 0 && u.Volumes+volumes > q.MaxVolumes {
		return fmt.Sprintf("tenant %q has %d volumes%s, its quota is %d volumes (maxVolumes)", u.Tenant, u.Volumes, making, q.MaxVolumes)
	}
	if q.MaxBytes > 0 && u.Bytes+bytes > q.MaxBytes {
		return fmt.Sprintf("tenant %q uses %d bytes%s; %d more would pass its quota of %d bytes (maxBytes) by %d bytes",
			u.Tenant, u.Bytes, making, bytes, q.MaxBytes, u.Bytes+bytes-q.MaxBytes)
	}
	return ""
}
