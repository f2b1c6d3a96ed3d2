package cephfs

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListAllocations is ListVolumes for the tenant quotas: it also lists clones still copying,
// which hold a place. Their size is set when the copy completes, so until then they count
// as a volume of 0 bytes (the controller that started one counts its requested bytes).
// The subvolumes adopted in place count too.
func (c *Controller) ListAllocations(ctx context.Context) ([]*backend.Volume, error) {
	return c.ListTenantAllocations(ctx, "")
}

// ListTenantAllocations is ListAllocations of one tenant ("" for every tenant): its
// subvolume group only, and the subvolumes adopted for it.
func (c *Controller) ListTenantAllocations(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	out, err := c.adoptedVolumes(s, tenant)
	if err != nil {
		return nil, err
	}
	subs, err := c.subvolumesOf(s, tenant)
	if err != nil {
		return nil, err
	}
	vols, err := readEach(subs, func(id volid.Volume, ref volumeRef) (*backend.Volume, error) { return c.allocationOf(s, id, ref) })
	return append(out, vols...), err
}

// allocationOf reads one subvolume as the quota counts it: a clone still copying at 0
// bytes, nil when it is gone or deleted with retained snapshots. What the MDS vouches for
// (mdsListed) costs the mgr nothing; anything else is the mgr's `subvolume info`.
func (c *Controller) allocationOf(s *session, id volid.Volume, ref volumeRef) (*backend.Volume, error) {
	if v := c.mdsListed(s, id, ref); v != nil {
		return &backend.Volume{ID: id, CapacityBytes: v.CapacityBytes}, nil
	}
	info, err := c.info(s, ref)
	switch {
	case backend.CodeOf(err) == backend.Pending:
		return &backend.Volume{ID: id}, nil
	case backend.IsNotFound(err):
		return nil, nil // deleted with retained snapshots: no longer a volume
	case err != nil:
		return nil, err
	}
	return &backend.Volume{ID: id, CapacityBytes: quotaBytes(info)}, nil
}
