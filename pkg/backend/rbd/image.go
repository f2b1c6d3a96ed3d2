package rbd

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// openPool opens an I/O context on a pool by name, in namespace ns.
func openPool(conn cluster, pool, ns string) (ioctx, error) {
	io, err := conn.OpenPool(pool)
	if err != nil {
		if isNotFound(err) {
			return nil, backend.Errorf(backend.InvalidArgument, "pool %q does not exist; create it (ceph osd pool create %s; rbd pool init %s) or fix the backend's pool / the StorageClass parameter %q", pool, pool, pool, ParamPool)
		}
		return nil, classify(err, "open pool "+pool)
	}
	io.SetNamespace(ns)
	return io, nil
}

// poolOf resolves a volume ID's location (the pool ID) to the pool name.
func poolOf(conn cluster, loc string) (string, error) {
	id, err := strconv.ParseInt(loc, 10, 64)
	if err != nil || id < 0 {
		return "", backend.Errorf(backend.NotFound, "location %q is not an RBD pool ID", loc)
	}
	name, err := conn.PoolName(id)
	if err != nil {
		if isNotFound(err) {
			return "", backend.Errorf(backend.NotFound, "pool ID %d no longer exists", id)
		}
		return "", classify(err, fmt.Sprintf("look up pool ID %d", id))
	}
	return name, nil
}

// openVolumePool opens the pool and tenant namespace a volume ID points at.
func openVolumePool(conn cluster, id volid.Volume) (ioctx, string, error) {
	pool, err := poolOf(conn, id.Location)
	if err != nil {
		return nil, "", err
	}
	io, err := openPool(conn, pool, volumeNamespace(id))
	if err != nil {
		return nil, "", err
	}
	return io, pool, nil
}

// ensureNamespace makes the tenant's RADOS namespace of pool, once per controller among
// concurrent creates.
func (c *Controller) ensureNamespace(ctx context.Context, io ioctx, pool, ns string) error {
	_, err := c.namespaces.Do(ctx, pool+"/"+ns, func() (string, error) {
		ok, err := io.NamespaceExists(ns)
		if err != nil && !isNotFound(err) {
			return "", classify(err, fmt.Sprintf("check RADOS namespace %s/%s", pool, ns))
		}
		if !ok {
			if err := io.CreateNamespace(ns); err != nil && !errors.Is(err, librbd.ErrExist) {
				return "", classify(err, fmt.Sprintf("create RADOS namespace %s/%s for the tenant (is the pool initialised with rbd pool init?)", pool, ns))
			}
		}
		return "", nil
	})
	return err
}

func (c *Controller) forgetNamespace(pool, ns string) { c.namespaces.Forget(pool + "/" + ns) }

// imageState is what a volume's image says about itself.
type imageState struct {
	size      uint64
	record    volumeRecord
	hasRecord bool
	parent    *librbd.ParentInfo
	snaps     []librbd.SnapInfo
}

// readImage reads size, record, parent and snapshots of an image; NotFound when absent.
func readImage(io ioctx, name string, withSnaps bool) (st *imageState, err error) {
	err = inImage(io, name, func(img image) error {
		st, err = readImageOf(img, withSnaps)
		return err
	})
	return st, err
}

// peekImage reads an image's size and record without opening it (readHeaderOf), where an
// open is about ten round trips; NotFound when absent, or half made or half removed. It
// reads neither parent nor snapshots.
func peekImage(io ioctx, name string) (*imageState, error) {
	_, h, err := readHeaderOf(io, name)
	if err != nil {
		return nil, classify(err, "header of image "+name)
	}
	return h.state(name)
}

// readHeaderOf reads an image's ID (one read of rbd_id.<name>), then its header with the
// record's metadata key (ReadHeader: one read), without opening the image.
func readHeaderOf(io ioctx, name string) (string, imageHeader, error) {
	id, err := io.ImageID(name)
	if err != nil {
		return "", imageHeader{}, err
	}
	h, err := io.ReadHeader(id, recordKey)
	return id, h, err
}

// state is what the header says of image name: its size and its record, if any.
func (h imageHeader) state(name string) (*imageState, error) {
	st := &imageState{size: h.size}
	if h.meta != nil {
		var err error
		if st.record, err = decodeRecord(string(h.meta)); err != nil {
			return nil, backend.Errorf(backend.Internal, "image %s: corrupt %s metadata: %v", name, recordKey, err)
		}
		st.hasRecord = true
	}
	return st, nil
}

// readImageOf is readImage on an open image.
func readImageOf(img image, withSnaps bool) (*imageState, error) {
	name := img.Name()
	st := &imageState{}
	var err error
	if st.size, err = img.Size(); err != nil {
		return nil, classify(err, "size of image "+name)
	}
	raw, err := img.Metadata(recordKey)
	switch {
	case err == nil:
		if st.record, err = decodeRecord(raw); err != nil {
			return nil, backend.Errorf(backend.Internal, "image %s: corrupt %s metadata: %v", name, recordKey, err)
		}
		st.hasRecord = true
	case !isNotFound(err):
		return nil, classify(err, "metadata of image "+name)
	}
	if p, err := img.Parent(); err == nil {
		st.parent = p
	} else if !isNotFound(err) {
		return nil, classify(err, "parent of image "+name)
	}
	if withSnaps {
		if st.snaps, err = img.Snapshots(); err != nil {
			return nil, classify(err, "snapshots of image "+name)
		}
	}
	return st, nil
}

// growClone gives a clone, which starts at its parent's size, the size asked for, and
// returns the image's size. Only a resize opens the image for writing.
func growClone(io ioctx, name string, size uint64) (cur uint64, err error) {
	err = inImage(io, name, func(img image) error {
		cur, err = img.Size()
		return classify(err, "size of image "+name)
	})
	if err != nil || cur >= size {
		return cur, err
	}
	return size, inImageRW(io, name, func(img image) error {
		return classify(img.Resize(size), "grow clone "+name)
	})
}

func featureBits(names []string) uint64 {
	return uint64(librbd.FeatureSetFromNames(names))
}

// makeImage creates a fresh image, or a clone for a content source.
func (c *Controller) makeImage(conn cluster, io ioctx, name string, size uint64, opts classOptions, req *backend.VolumeRequest) error {
	features := featureBits(opts.Features)
	switch {
	case req.SourceSnapshot != nil:
		return c.cloneSnapshot(conn, io, *req.SourceSnapshot, name, features)
	case req.SourceVolume != nil:
		return c.cloneVolume(conn, io, *req.SourceVolume, name, features)
	}
	if err := io.CreateImage(name, size, features); err != nil {
		if isNotFound(err) {
			return backend.Errorf(backend.NotFound, "create image %s: RADOS namespace %q vanished; retry", name, req.Tenant)
		}
		return classify(err, "create image "+name)
	}
	return nil
}
