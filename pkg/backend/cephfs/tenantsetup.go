package cephfs

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
)

// tenantSetup is backend.TenantSetup (the subvolume group and the identity, made once per
// tenant among concurrent creates) under the names this package's calls use.
type tenantSetup struct{ backend.TenantSetup }

func (t *tenantSetup) do(ctx context.Context, key string, fn func() (string, error)) (string, error) {
	return t.Do(ctx, key, fn)
}

func (t *tenantSetup) forget(key string) { t.Forget(key) }
