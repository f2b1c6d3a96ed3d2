package rbd

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// openPool opens an I/O context on a pool by name, in namespace ns.
func openPool(conn *rados.Conn, pool, ns string) (*rados.IOContext, error) {
	io, err := conn.OpenIOContext(pool)
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
func poolOf(conn *rados.Conn, loc string) (string, error) {
	id, err := strconv.ParseInt(loc, 10, 64)
	if err != nil || id < 0 {
		return "", backend.Errorf(backend.NotFound, "location %q is not an RBD pool ID", loc)
	}
	name, err := conn.GetPoolByID(id)
	if err != nil {
		if isNotFound(err) {
			return "", backend.Errorf(backend.NotFound, "pool ID %d no longer exists", id)
		}
		return "", classify(err, fmt.Sprintf("look up pool ID %d", id))
	}
	return name, nil
}

// openVolumePool opens the pool and tenant namespace a volume ID points at.
func openVolumePool(conn *rados.Conn, id volid.Volume) (*rados.IOContext, string, error) {
	pool, err := poolOf(conn, id.Location)
	if err != nil {
		return nil, "", err
	}
	io, err := openPool(conn, pool, id.Tenant)
	if err != nil {
		return nil, "", err
	}
	return io, pool, nil
}

func (c *Controller) ensureNamespace(io *rados.IOContext, pool, ns string) error {
	key := pool + "/" + ns
	c.mu.Lock()
	known := c.namespaces[key]
	c.mu.Unlock()
	if known {
		return nil
	}
	ok, err := librbd.NamespaceExists(io, ns)
	if err != nil && !isNotFound(err) {
		return classify(err, fmt.Sprintf("check RADOS namespace %s/%s", pool, ns))
	}
	if !ok {
		if err := librbd.NamespaceCreate(io, ns); err != nil && !errors.Is(err, librbd.ErrExist) {
			return classify(err, fmt.Sprintf("create RADOS namespace %s/%s for the tenant (is the pool initialised with rbd pool init?)", pool, ns))
		}
	}
	c.mu.Lock()
	c.namespaces[key] = true
	c.mu.Unlock()
	return nil
}

func (c *Controller) forgetNamespace(pool, ns string) {
	c.mu.Lock()
	delete(c.namespaces, pool+"/"+ns)
	c.mu.Unlock()
}

// imageState is what a volume's image says about itself.
type imageState struct {
	size      uint64
	record    volumeRecord
	hasRecord bool
	parent    *librbd.ParentInfo
	snaps     []librbd.SnapInfo
}

// readImage reads size, record, parent and snapshots of an image; NotFound when absent.
func readImage(io *rados.IOContext, name string, withSnaps bool) (*imageState, error) {
	img, err := librbd.OpenImageReadOnly(io, name, librbd.NoSnapshot)
	if err != nil {
		return nil, classify(err, "open image "+name)
	}
	defer img.Close()
	st := &imageState{}
	if st.size, err = img.GetSize(); err != nil {
		return nil, classify(err, "size of image "+name)
	}
	raw, err := img.GetMetadata(recordKey)
	switch {
	case err == nil:
		if st.record, err = decodeRecord(raw); err != nil {
			return nil, backend.Errorf(backend.Internal, "image %s: corrupt %s metadata: %v", name, recordKey, err)
		}
		st.hasRecord = true
	case !isNotFound(err):
		return nil, classify(err, "metadata of image "+name)
	}
	if p, err := img.GetParent(); err == nil {
		st.parent = p
	} else if !isNotFound(err) {
		return nil, classify(err, "parent of image "+name)
	}
	if withSnaps {
		if st.snaps, err = img.GetSnapshotNames(); err != nil {
			return nil, classify(err, "snapshots of image "+name)
		}
	}
	return st, nil
}

// growClone gives a clone, which starts at its parent's size, the size asked for, and
// returns the image's size. Only a resize opens the image for writing.
func growClone(io *rados.IOContext, name string, size uint64) (uint64, error) {
	img, err := librbd.OpenImageReadOnly(io, name, librbd.NoSnapshot)
	if err != nil {
		return 0, classify(err, "open new image "+name)
	}
	cur, err := img.GetSize()
	img.Close()
	if err != nil || cur >= size {
		return cur, classify(err, "size of image "+name)
	}
	img, err = librbd.OpenImage(io, name, librbd.NoSnapshot)
	if err != nil {
		return 0, classify(err, "open new image "+name)
	}
	defer img.Close()
	if err := img.Resize(size); err != nil {
		return 0, classify(err, "grow clone "+name)
	}
	return size, nil
}

func featureBits(names []string) uint64 {
	return uint64(librbd.FeatureSetFromNames(names))
}

// makeImage creates a fresh image, or a clone for a content source.
func (c *Controller) makeImage(conn *rados.Conn, io *rados.IOContext, name string, size uint64, opts classOptions, req *backend.VolumeRequest) error {
	ro := librbd.NewRbdImageOptions()
	defer ro.Destroy()
	if err := ro.SetUint64(librbd.ImageOptionFeatures, featureBits(opts.Features)); err != nil {
		return classify(err, "image options")
	}
	switch {
	case req.SourceSnapshot != nil:
		return c.cloneSnapshot(conn, io, *req.SourceSnapshot, name, ro)
	case req.SourceVolume != nil:
		return c.cloneVolume(conn, io, *req.SourceVolume, name, ro)
	}
	if err := librbd.CreateImage(io, name, size, ro); err != nil {
		if isNotFound(err) {
			return backend.Errorf(backend.NotFound, "create image %s: RADOS namespace %q vanished; retry", name, req.Tenant)
		}
		return classify(err, "create image "+name)
	}
	return nil
}
