package cephfs

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// AllocationIDs lists the csi-vol- subvolumes of every tenant's group from the mgr's
// subvolume lists, with no info call (tenant.AllocationIndex): one mgr command per group,
// where ListAllocations asks for every subvolume's info.
func (c *Controller) AllocationIDs(ctx context.Context) ([]volid.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	var out []volid.Volume
	err = c.eachSubvolume(s, "", func(id volid.Volume, _ volumeRef) error {
		out = append(out, id)
		return nil
	})
	return out, err
}

// AllocationsOf asks for the info of ids' subvolumes and returns those ListAllocations
// would list; a filesystem gone holds none of them.
func (c *Controller) AllocationsOf(ctx context.Context, ids []volid.Volume) ([]*backend.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	var out []*backend.Volume
	for _, id := range ids {
		ref, err := c.ref(s, id)
		if backend.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		v, err := c.allocationOf(s, id, ref)
		if err != nil {
			return nil, err
		}
		if v != nil {
			out = append(out, v)
		}
	}
	return out, nil
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
