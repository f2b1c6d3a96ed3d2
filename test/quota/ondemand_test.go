package quotatest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
	"github.com/shiphold/shiphold/test/harness"
)

// A reading of one tenant (what a create of a quota tenant does while a backend's usage is
// not known) finds on every real backend what a full reading finds of that tenant, and
// nothing of another tenant: RBD the tenant's namespace, CephFS its subvolume group, Isilon
// its directory, with the storage inspected beside.
func TestTenantReadingMatchesTheFullReading(t *testing.T) {
	quotas := config.Tenants{Default: config.TenantQuota{MaxVolumes: 100}}
	s := startStack(t, quotas)
	shop, blog := uniqueTenant(t, "qshop"), uniqueTenant(t, "qblog")
	for _, be := range backends {
		for i := range 2 {
			s.createOnceRead(t, request(fmt.Sprintf("shop-%s-%d", be, i), be, shop, 3*mib))
		}
		s.createOnceRead(t, request("blog-"+be, be, blog, mib))
		if n := s.onStorage(t, be, shop); n != 2 {
			t.Fatalf("%s holds %d volumes of %s, want 2", be, n, shop)
		}
	}

	cfg := &config.Config{Backends: []config.Backend{
		harness.RBDBackend(t, "q-rbd"), harness.CephFSBackend(t, "q-cephfs"), s.sim.Backend(t, "q-isilon"),
	}, Tenants: quotas}
	opened, err := registry.Open(cfg, true, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(opened.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	onDemand := tenant.NewLedger(opened.Controllers, quotas, tenant.LedgerOptions{})
	if err := onDemand.ReadTenant(ctx, shop); err != nil {
		t.Fatalf("reading %s alone: %v", shop, err)
	}
	full := tenant.NewLedger(opened.Controllers, quotas, tenant.LedgerOptions{})
	if err := full.ReadAll(ctx); err != nil {
		t.Fatalf("full reading: %v", err)
	}
	got, want := onDemand.Usage(shop), full.Usage(shop)
	for _, be := range backends {
		g, w := got.ByBackend[be], want.ByBackend[be]
		if g != w || g.Volumes != 2 {
			t.Errorf("%s on %s: the tenant's reading found %+v, the full reading %+v; want 2 volumes in both", shop, be, g, w)
		}
	}
	if u := onDemand.Usage(blog); u.Volumes != 0 {
		t.Errorf("reading %s counted %d volumes of %s", shop, u.Volumes, blog)
	}
	if u := full.Usage(blog); u.Volumes != len(backends) {
		t.Errorf("the full reading counted %d volumes of %s, want %d", u.Volumes, blog, len(backends))
	}
}
