package driver

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/tenant"
	"github.com/shiphold/shiphold/pkg/volid"
)

// firstUsageWait bounds how long Serve waits for the first reading of tenant usage before
// it answers calls; on a backend not read by then, a create of a tenant with a quota reads
// that tenant's volumes first (Ledger.ReadTenant).
const firstUsageWait = 10 * time.Second

// startLedger keeps tenant usage fresh in the background for the quota checks, when the
// config has quotas at all.
func (d *ControllerServer) startLedger(ctx context.Context) {
	if len(d.opts.Controllers) == 0 || !d.ledger.Needed() {
		return
	}
	select {
	case <-d.ledger.Start(ctx):
	case <-time.After(firstUsageWait):
		klog.Warningf("tenant usage not read from every backend within %s; until it is, a create of a tenant with a quota reads that tenant's volumes first", firstUsageWait)
	case <-ctx.Done():
	}
}

// reserveQuota admits the volume under its tenant's quota, counted as the backend will
// allocate it, before anything is created; the reservation holds its place until settled.
func (d *ControllerServer) reserveQuota(ctx context.Context, c backend.Controller, vreq *backend.VolumeRequest) (*tenant.Reservation, error) {
	caps := d.kinds[c.Kind()]
	var source int64
	if d.ledger.Limits(vreq.Tenant) && caps.ClonesKeepSourceSize {
		var err error
		if source, err = d.sourceBytes(ctx, c, vreq); err != nil {
			return nil, err
		}
	}
	bytes := caps.Allocated(vreq.RequiredBytes, source)
	if err := d.ledger.ReadTenant(ctx, vreq.Tenant); err != nil {
		return nil, toStatus(err)
	}
	r, err := d.ledger.ReserveVolume(vreq.ID(c.Name(), ""), bytes)
	if err != nil {
		return nil, toStatus(err)
	}
	return r, nil
}

// sourceBytes is the size of a clone's source: a clone is at least as large.
func (d *ControllerServer) sourceBytes(ctx context.Context, c backend.Controller, vreq *backend.VolumeRequest) (int64, error) {
	switch {
	case vreq.SourceVolume != nil:
		if n, ok := d.ledger.VolumeBytes(*vreq.SourceVolume); ok {
			return n, nil
		}
		v, err := c.GetVolume(ctx, *vreq.SourceVolume, vreq.Secrets)
		if err != nil {
			return 0, toStatus(err)
		}
		return v.CapacityBytes, nil
	case vreq.SourceSnapshot != nil:
		s, err := c.GetSnapshot(ctx, *vreq.SourceSnapshot)
		if err != nil {
			return 0, toStatus(err)
		}
		return s.SizeBytes, nil
	}
	return 0, nil
}

// reserveGrowth admits an expansion of id to requiredBytes under its tenant's quota.
func (d *ControllerServer) reserveGrowth(ctx context.Context, c backend.Controller, id volid.Volume, requiredBytes int64, secrets map[string]string) (*tenant.Reservation, error) {
	current, known := d.ledger.VolumeBytes(id)
	if !known && d.ledger.Limits(id.Tenant) {
		v, err := c.GetVolume(ctx, id, secrets)
		if err != nil {
			return nil, toStatus(err)
		}
		current = v.CapacityBytes
	}
	if err := d.ledger.ReadTenant(ctx, id.Tenant); err != nil {
		return nil, toStatus(err)
	}
	r, err := d.ledger.ReserveGrowth(id, current, d.kinds[c.Kind()].Allocated(requiredBytes, 0))
	if err != nil {
		return nil, toStatus(err)
	}
	return r, nil
}

// settle ends a reservation by its call's outcome: the allocated size counts; a refusal
// frees the place; work the storage may still finish keeps it.
func settle(r *tenant.Reservation, allocated int64, err error) {
	switch {
	case err == nil:
		r.Commit(allocated)
	case refused(err):
		r.Cancel()
	default:
		r.Unfinished()
	}
}

// refused reports whether the storage turned the request down without doing anything.
func refused(err error) bool {
	switch backend.CodeOf(err) {
	case backend.NotFound, backend.AlreadyExists, backend.InvalidArgument, backend.ResourceExhausted,
		backend.OutOfRange, backend.FailedPrecondition, backend.Unimplemented:
		return true
	}
	return false
}
