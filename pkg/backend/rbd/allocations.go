package rbd

import (
	"context"
	"strconv"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListAllocations is ListVolumes for the tenant quotas: it also lists csi-vol- images of the
// configured pool that have no record yet (a create under way, or one that stopped between
// making the image and recording it), at their allocated size, since they hold the space;
// and the images adopted in place.
func (c *Controller) ListAllocations(ctx context.Context) ([]*backend.Volume, error) {
	return c.ListTenantAllocations(ctx, "")
}

// ListTenantAllocations is ListAllocations of one tenant ("" for every tenant): its
// namespaces only, and the images adopted for it.
func (c *Controller) ListTenantAllocations(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	var adopted []*backend.Volume
	if err := c.storage.Do(ctx, nil, func(conn connection) (err error) {
		adopted, err = c.adoptedVolumes(conn, tenant)
		return err
	}); err != nil {
		return nil, err
	}
	vols, err := c.allocations(ctx, tenant, false)
	return append(adopted, vols...), err
}

// ListRecordless lists the csi-vol- images of the configured pool that have no record
// (shipholdctl gc: a create that stopped between making the image and recording it).
func (c *Controller) ListRecordless(ctx context.Context) ([]*backend.Volume, error) {
	return c.allocations(ctx, "", true)
}

func (c *Controller) allocations(ctx context.Context, tenant string, recordless bool) ([]*backend.Volume, error) {
	var out []*backend.Volume
	err := c.storage.Do(ctx, nil, func(conn connection) error {
		return c.eachNamespaceImages(conn, tenant, func(io ioctx, pool, ns string, hashes []string) error {
			vols, err := c.readAllocations(io, pool, ns, hashes, recordless)
			out = append(out, vols...)
			return err
		})
	})
	return out, err
}

// readAllocations reads the images of hashes in io's namespace as allocationOf does,
// pageReaders at a time, in order; only those without this backend's record when
// recordless.
func (c *Controller) readAllocations(io ioctx, pool, ns string, hashes []string, recordless bool) ([]*backend.Volume, error) {
	return backend.ReadEach(len(hashes), pageReaders, func(i int) (*backend.Volume, error) {
		v, recorded, err := c.allocationOf(io, pool, ns, hashes[i])
		if recordless && recorded {
			return nil, err
		}
		return v, err
	})
}

// allocationOf reads one image as the quota counts it: nil when it is gone or another
// backend's (a record of another, or no record outside the configured pool); recorded says
// whether it has this backend's record. It reads the image's header without opening it
// (peekImage: a full reading of 15,000 images took 574 s with an open each).
func (c *Controller) allocationOf(io ioctx, pool, ns, hash string) (*backend.Volume, bool, error) {
	st, err := peekImage(io, imageName(hash))
	if backend.IsNotFound(err) {
		return nil, false, nil // gone, or half made or half removed: no space of a volume
	}
	if err != nil {
		return nil, false, err
	}
	recorded := st.hasRecord && st.record.Backend == c.name
	if !recorded && (st.hasRecord || pool != c.cfg.Pool) {
		return nil, false, nil // another backend's image
	}
	vid := volid.Volume{Backend: c.name, Tenant: ns, Location: strconv.FormatInt(io.ID(), 10), Hash: hash}
	if vid.Validate() != nil {
		return nil, false, nil
	}
	return &backend.Volume{ID: vid, CapacityBytes: int64(st.size)}, recorded, nil
}
