package cephfs

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// AllocationIDs lists the csi-vol- subvolumes of every tenant's group from the group
// directories, read through the MDS (tenant.AllocationIndex): no mgr command.
func (c *Controller) AllocationIDs(ctx context.Context) ([]volid.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	subs, err := c.subvolumesOf(s, "")
	if err != nil {
		return nil, err
	}
	out := make([]volid.Volume, len(subs))
	for i, sub := range subs {
		out[i] = sub.id
	}
	return out, nil
}

// AllocationsOf reads ids' subvolumes as ListAllocations does (allocationOf), pageReaders
// at a time, and returns those it would list; a filesystem gone holds none of them.
func (c *Controller) AllocationsOf(ctx context.Context, ids []volid.Volume) ([]*backend.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	var subs []placedSubvolume
	for _, id := range ids {
		ref, err := c.ref(s, id)
		if backend.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		subs = append(subs, placedSubvolume{id: id, ref: ref})
	}
	return readEach(subs, func(id volid.Volume, ref volumeRef) (*backend.Volume, error) { return c.allocationOf(s, id, ref) })
}

// AdoptedAllocations reads the subvolumes adopted in place (tenant.AllocationIndex): no
// subvolume list of a tenant's group names them.
func (c *Controller) AdoptedAllocations(ctx context.Context) ([]*backend.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	return c.adoptedVolumes(s, "")
}
