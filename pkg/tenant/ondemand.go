package tenant

import (
	"context"
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
)

// A backend's full reading lists every volume: at 15,000 RBD images the first one takes
// minutes, and until it ends a tenant with a quota could not create (UNAVAILABLE). A
// create of such a tenant reads the tenant's own volumes instead, on the backends where
// its usage is not known: one listing of one tenant's place, shared by the tenant's
// concurrent creates, and trusted as a full reading is, for StaleAfter or until the next
// full reading.

// TenantAllocationLister is a backend that lists one tenant's allocations, as
// AllocationLister does every tenant's: its volumes and the objects of volumes still
// being made. A backend without it has the tenant's ListVolumes read.
type TenantAllocationLister interface {
	ListTenantAllocations(ctx context.Context, tenant string) ([]*backend.Volume, error)
}

// tenantReading is one reading of one tenant on one backend; done closes when it ends.
type tenantReading struct {
	done chan struct{}
	err  error
	// changes collects this controller's changes to the tenant's volumes while it runs,
	// to apply them again on top of what the listing found.
	changes []change
}

// ReadTenant makes the tenant's usage known on every backend where the quota check would
// refuse it as unknown (never read, or read too long ago while the tenant has volumes
// there), by reading the tenant's volumes there: each backend at once, one reading per
// backend and tenant among concurrent callers. It returns at once when the usage is known
// everywhere, and without waiting further when ctx ends; the readings go on, bounded by
// StaleAfter, for the next caller. A failed reading answers with the backend's own code
// (UNAVAILABLE when it did not answer) and the check stays refused.
func (l *Ledger) ReadTenant(ctx context.Context, tenant string) error {
	if !l.Limits(tenant) {
		return nil
	}
	var waits []*tenantReading
	var names []string
	l.mu.Lock()
	for _, name := range l.backendNames() {
		if l.unknownOn(tenant, name) == nil {
			continue
		}
		b := l.books[name]
		tr := b.tenantReads[tenant]
		if tr == nil {
			tr = &tenantReading{done: make(chan struct{})}
			b.tenantReads[tenant] = tr
			go l.readTenant(context.WithoutCancel(ctx), name, b, tenant, tr)
		}
		waits = append(waits, tr)
		names = append(names, name)
	}
	l.mu.Unlock()
	for i, tr := range waits {
		select {
		case <-tr.done:
		case <-ctx.Done():
			return backend.Errorf(backend.Unavailable, "tenant %q has a quota and its usage on backend %q is being read: %v; retry", tenant, names[i], ctx.Err())
		}
		if tr.err != nil {
			return backend.Errorf(readCode(tr.err), "tenant %q has a quota and its usage on backend %q could not be read (%v); retry once the backend answers", tenant, names[i], tr.err)
		}
	}
	return nil
}

// readTenant reads the tenant's volumes on one backend, bounded by StaleAfter, and puts
// them in the book in place of what it held of the tenant.
func (l *Ledger) readTenant(ctx context.Context, name string, b *book, tenant string, tr *tenantReading) {
	rctx, cancel := context.WithTimeout(ctx, l.opts.StaleAfter)
	vols, err := listTenantAllocations(rctx, l.ctrls[name], tenant)
	cancel()

	l.mu.Lock()
	defer l.mu.Unlock()
	delete(b.tenantReads, tenant)
	defer close(tr.done)
	if err != nil {
		tr.err = fmt.Errorf("listing the volumes of tenant %q on backend %q: %w", tenant, name, err)
		return
	}
	b.replaceTenant(tenant, vols)
	for _, ch := range tr.changes {
		b.apply(ch)
	}
	b.tenantReadAt[tenant] = l.opts.Now()
	l.dropFinishedPending(name, b)
}

// replaceTenant puts what a reading of one tenant found in place of the book's entries of
// that tenant.
func (b *book) replaceTenant(tenant string, vols []*backend.Volume) {
	for k := range b.keys[tenant] {
		b.remove(k)
	}
	for _, v := range vols {
		if v.ID.Tenant == tenant {
			b.put(bookKey(v.ID), entry{tenant: tenant, bytes: v.CapacityBytes})
		}
	}
}

func listTenantAllocations(ctx context.Context, c backend.Controller, tenant string) ([]*backend.Volume, error) {
	if tl, ok := c.(TenantAllocationLister); ok {
		return tl.ListTenantAllocations(ctx, tenant)
	}
	return c.ListVolumes(ctx, tenant)
}
