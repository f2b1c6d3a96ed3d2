package rbd

import (
	"context"
	"sort"
	"strconv"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// AllocationIDs lists the csi-vol- images of every tenant's namespace from the pools' image
// directories, opening none (tenant.AllocationIndex): one read per namespace, where
// ListAllocations reads every image's header.
func (c *Controller) AllocationIDs(ctx context.Context) ([]volid.Volume, error) {
	var out []volid.Volume
	err := c.storage.Do(ctx, nil, func(conn connection) error {
		return c.eachImage(conn, "", func(io ioctx, pool, ns, hash string) error {
			id := volid.Volume{Backend: c.name, Tenant: ns, Location: strconv.FormatInt(io.ID(), 10), Hash: hash}
			if id.Validate() == nil {
				out = append(out, id)
			}
			return nil
		})
	})
	return out, err
}

// AllocationsOf reads the images of ids as ListAllocations does and returns those it would
// list.
func (c *Controller) AllocationsOf(ctx context.Context, ids []volid.Volume) ([]*backend.Volume, error) {
	sorted := append([]volid.Volume(nil), ids...)
	sort.Slice(sorted, func(i, j int) bool {
		return placeKey(sorted[i].Tenant, sorted[i].Location) < placeKey(sorted[j].Tenant, sorted[j].Location)
	})
	var out []*backend.Volume
	err := c.storage.Do(ctx, nil, func(conn connection) error {
		for len(sorted) > 0 {
			n := 1
			for n < len(sorted) && sorted[n].Tenant == sorted[0].Tenant && sorted[n].Location == sorted[0].Location {
				n++
			}
			vols, err := c.allocationsIn(conn, sorted[:n])
			if err != nil {
				return err
			}
			out, sorted = append(out, vols...), sorted[n:]
		}
		return nil
	})
	return out, err
}

// allocationsIn reads ids of one namespace of one pool; a pool gone holds none of them.
func (c *Controller) allocationsIn(conn cluster, ids []volid.Volume) ([]*backend.Volume, error) {
	pool, err := poolOf(conn, ids[0].Location)
	if backend.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	io, err := openPool(conn, pool, ids[0].Tenant)
	if err != nil {
		return nil, err
	}
	defer io.Destroy()
	hashes := make([]string, len(ids))
	for i, id := range ids {
		hashes[i] = id.Hash
	}
	return c.readAllocations(io, pool, ids[0].Tenant, hashes, false)
}

// AdoptedAllocations reads the images adopted in place (tenant.AllocationIndex): they lie
// outside the tenants' namespaces whose image directories AllocationIDs reads.
func (c *Controller) AdoptedAllocations(ctx context.Context) ([]*backend.Volume, error) {
	var out []*backend.Volume
	err := c.storage.Do(ctx, nil, func(conn connection) (err error) {
		out, err = c.adoptedVolumes(conn, "")
		return err
	})
	return out, err
}
