package endpoint

import (
	"context"
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/libcephfs"
	"github.com/shiphold/shiphold/pkg/migrate/nfs3"
	"github.com/shiphold/shiphold/pkg/migrate/posixfs"
	"github.com/shiphold/shiphold/pkg/tenant"
	"github.com/shiphold/shiphold/pkg/volid"
)

// TargetRequest is the volume a migration writes to.
type TargetRequest struct {
	Backend string
	Tenant  string
	// Name is the CSI request name: derived from the source, so every run of one migration
	// finds the same volume.
	Name       string
	Bytes      int64
	MultiNode  bool
	Parameters map[string]string
}

// TargetName derives the request name of a migration's target from its source.
func TargetName(sourceKey string) string { return "shiphold-migrate-" + volid.Hash(sourceKey) }

// FindTarget returns the target volume if an earlier run created it.
func (env *Env) FindTarget(ctx context.Context, r TargetRequest) (*backend.Volume, error) {
	ctrl := env.Controllers[r.Backend]
	if ctrl == nil {
		return nil, fmt.Errorf("backend %q is not in the config", r.Backend)
	}
	vols, err := ctrl.ListVolumes(ctx, r.Tenant)
	if err != nil {
		return nil, fmt.Errorf("list volumes of tenant %q on %q: %w", r.Tenant, r.Backend, err)
	}
	for _, v := range vols {
		if v.RequestName == r.Name || v.ID.Hash == volid.Hash(r.Name) {
			return v, nil
		}
	}
	return nil, nil
}

// EnsureTarget creates the target volume for the tenant, idempotently, after checking that
// it fits the tenant's quota (a volume an earlier run created is already counted).
func (env *Env) EnsureTarget(ctx context.Context, r TargetRequest) (*backend.Volume, error) {
	existing, err := env.FindTarget(ctx, r)
	if err != nil {
		return nil, err
	}
	if existing == nil {
		if err := env.checkQuota(ctx, r); err != nil {
			return nil, err
		}
	}
	v, err := env.Controllers[r.Backend].CreateVolume(ctx, &backend.VolumeRequest{Name: r.Name, Tenant: r.Tenant,
		RequiredBytes: r.Bytes, MultiNode: r.MultiNode, Parameters: r.Parameters})
	if err != nil {
		return nil, fmt.Errorf("create the target volume on %q: %w", r.Backend, err)
	}
	return v, nil
}

// checkQuota refuses, before anything is created, a target the tenant's quota cannot hold.
func (env *Env) checkQuota(ctx context.Context, r TargetRequest) error {
	vols, err := tenant.Volumes(ctx, env.Controllers, r.Tenant)
	if err != nil {
		return fmt.Errorf("tenant %q quota check: %w", r.Tenant, err)
	}
	u := &tenant.Usage{Tenant: r.Tenant, Quota: env.Config.Tenants.QuotaFor(r.Tenant)}
	if all := tenant.Summarize(vols, env.Config.Tenants); len(all) == 1 {
		u = all[0]
	}
	if why := u.Admits(r.Bytes); why != "" {
		return backend.Errorf(backend.ResourceExhausted, "the target volume (%d bytes) does not fit: %s", r.Bytes, why)
	}
	return nil
}

// LimitsOf is what a backend kind's volumes can represent, for a plan made before the
// target exists.
func LimitsOf(kind string) migrate.Limits {
	switch kind {
	case backend.KindCephFS:
		return libcephfs.Limits()
	case backend.KindIsilon:
		return nfs3.Limits()
	}
	return posixfs.Ext4Limits()
}
