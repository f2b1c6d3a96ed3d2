package rbd

import (
	"context"
	"fmt"
	"strconv"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

func (c *Controller) CreateVolume(ctx context.Context, req *backend.VolumeRequest) (*backend.Volume, error) {
	opts, err := resolveOptions(req.Parameters, c.cfg.Pool, c.cfg.ImageFeatures, c.cfg.Mounter)
	if err != nil {
		return nil, err
	}
	size, err := roundSize(req.RequiredBytes, req.LimitBytes)
	if err != nil {
		return nil, err
	}
	name := imageName(volid.Hash(req.Name))
	var vol *backend.Volume
	err = c.storage.Do(ctx, req.Secrets, func(conn connection) error {
		io, err := openPool(conn, opts.Pool, req.Tenant)
		if err != nil {
			return err
		}
		defer io.Destroy()
		id := req.ID(c.name, strconv.FormatInt(io.ID(), 10))
		if len(id.Location) > volid.MaxLocationLen {
			return backend.Errorf(backend.Internal, "pool ID %s does not fit a volume ID", id.Location)
		}
		// Every limit is checked before anything exists: a clone starts at its source's size.
		srcSize, err := sourceSize(conn, req)
		if err != nil {
			return err
		}
		if req.LimitBytes > 0 && int64(srcSize) > req.LimitBytes {
			return backend.Errorf(backend.OutOfRange, "content source is %d bytes, over limit_bytes %d", srcSize, req.LimitBytes)
		}
		if err := c.ensureNamespace(ctx, io, opts.Pool, req.Tenant); err != nil {
			return err
		}
		// The tenant's identity is made (a mon write, the tenant's first volume) while the
		// image is; a fresh image is recorded only once the identity is there.
		identity := c.startIdentity(ctx, conn, opts.Pool, req.Tenant)
		ready := func() error { _, err := identity.wait(); return err }
		rec, cur, err := c.provision(ctx, conn, io, name, uint64(size), opts, req, ready)
		if ierr := ready(); err == nil {
			err = ierr
		}
		if err != nil {
			return err
		}
		if req.SourceVolume != nil {
			if err := finishVolumeClone(ctx, c.taskWait, conn, io, opts.Pool, req.Tenant, name, *req.SourceVolume); err != nil {
				return err
			}
		}
		vol = c.volume(id, int64(cur), rec, opts.Pool)
		return nil
	})
	if err != nil {
		if backend.IsNotFound(err) && req.SourceSnapshot == nil && req.SourceVolume == nil {
			c.forgetNamespace(opts.Pool, req.Tenant)
		}
		return nil, err
	}
	vol.Context = volumeContext(c.cfg.ClusterID, opts.Pool, req.Tenant, name, opts)
	return vol, nil
}

// provision creates the image and records the request on it, or finds the image an earlier
// attempt made and recorded; it returns the record and the image's size.
// A fresh image whose ready answers an error is discarded before it is recorded.
func (c *Controller) provision(ctx context.Context, conn cluster, io ioctx, name string, size uint64, opts classOptions, req *backend.VolumeRequest, ready func() error) (volumeRecord, uint64, error) {
	want := newRecord(c.name, req)
	// An earlier attempt that moved its image to the trash and died before queueing the
	// purge is not looked for here: the controller's sweep, at start-up and every
	// collectInterval, queues such purges (a listing beside every create cost 2 ms of 18).
	for attempt := 0; ; attempt++ {
		if err := late(ctx, "create image "+name); err != nil {
			return want, 0, err
		}
		err := c.makeImage(conn, io, name, size, opts, req)
		if err == nil {
			break
		}
		if backend.CodeOf(err) != backend.AlreadyExists || attempt > 1 {
			return want, 0, err
		}
		st, err := readImage(io, name, false)
		switch {
		case err == nil && st.hasRecord && st.record.Name != req.Name && st.parent != nil:
			// A clone starts with its parent's metadata: this record is the parent's, and the
			// attempt that made the clone died before writing its own.
		case err == nil && st.hasRecord:
			if st.record.Backend != c.name {
				return want, 0, backend.Errorf(backend.AlreadyExists, "image %s/%s/%s belongs to backend %q", opts.Pool, req.Tenant, name, st.record.Backend)
			}
			if err := st.record.Conflict(req, int64(st.size)); err != nil {
				return want, 0, err
			}
			return st.record, st.size, nil
		case err != nil && !backend.IsNotFound(err):
			return want, 0, err
		}
		// Left by an attempt that died before recording it, or a name whose image is
		// half created or half removed: discard it and start over.
		if err := discard(conn, io, opts.Pool, req.Tenant, name); err != nil {
			return want, 0, err
		}
	}
	cur := size // a fresh image has the size it was made with: no open to read it
	if req.SourceSnapshot != nil || req.SourceVolume != nil {
		var err error
		if cur, err = growClone(io, name, size); err != nil {
			return want, 0, err
		}
		// librbd copies the parent's metadata to a clone, its publish records too.
		if err := dropImageMetadata(io, name, backend.IsPublishRecordKey); err != nil {
			return want, 0, err
		}
	}
	if err := ready(); err != nil {
		if derr := discard(conn, io, opts.Pool, req.Tenant, name); derr != nil {
			return want, 0, fmt.Errorf("%w (and the image made meanwhile stays: %v)", err, derr)
		}
		return want, 0, err
	}
	if err := setImageMetadata(io, name, recordKey, want.encode()); err != nil {
		return want, 0, err
	}
	return want, cur, nil
}

func (c *Controller) volume(id volid.Volume, size int64, r volumeRecord, pool string) *backend.Volume {
	v := &backend.Volume{ID: id, CapacityBytes: size, RequestName: r.Name}
	if r.Source != "" {
		if s, err := volid.ParseSnapshot(r.Source); err == nil {
			v.SourceSnapshot = &s
		} else if sv, err := volid.ParseVolume(r.Source); err == nil {
			v.SourceVolume = &sv
		}
	}
	if opts, err := resolveOptions(r.Params, pool, c.cfg.ImageFeatures, c.cfg.Mounter); err == nil {
		v.Context = volumeContext(c.cfg.ClusterID, pool, volumeNamespace(id), volumeImage(id), opts)
	}
	return v
}

// DeleteVolume moves the image to the trash and has the Ceph mgr purge it (see discard).
// An image that still has CSI snapshots is refused with FAILED_PRECONDITION: snapshots live
// on the image, so they are not independent of it; so is one a node still has open.
func (c *Controller) DeleteVolume(ctx context.Context, id volid.Volume, secrets map[string]string) (err error) {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	identityDone := false
	defer func() {
		if err == nil && !identityDone {
			err = c.dropIdentityIfLast(ctx, id.Tenant, secrets)
		}
	}()
	name := volumeImage(id)
	return c.storage.Do(ctx, secrets, func(conn connection) error {
		io, pool, err := openVolumePool(conn, id)
		if err != nil {
			if backend.IsNotFound(err) {
				return nil
			}
			return err
		}
		defer io.Destroy()
		defer c.markDeleting(id.Tenant, pool, name)()
		st, err := c.readForDelete(conn, io, name)
		if backend.IsNotFound(err) {
			// Gone, or half gone: a name whose image cannot be opened, or a trash entry
			// whose purge was never queued.
			return discard(conn, io, pool, volumeNamespace(id), name)
		}
		if err != nil {
			return err
		}
		if st.hasRecord && st.record.Backend != c.name {
			return nil
		}
		if err := dropTemporarySnaps(ctx, conn, io, name, id, st.csiSnaps, st.tmpSnaps); err != nil {
			return err
		}
		if st.watches == nil || len(st.tmpSnaps) > 0 {
			// Read now, once the temporary snapshots are gone.
			st.watches, st.watchErr = readWatches(conn, io, name)
		}
		if st.watchErr != nil {
			return st.watchErr
		}
		if err := c.checkUnused(conn, io, name, id, st.watches); err != nil {
			return err
		}
		if err := late(ctx, "remove image "+name); err != nil {
			return err
		}
		// The tenant's identity goes with its last image: whether it has others is read
		// once the image has moved to the trash, while its purge is queued, and the
		// identity removed then.
		return c.trashImage(conn, io, pool, volumeNamespace(id), name, st.watches.id, func() error {
			if volumeNamespace(id) != id.Tenant {
				return nil // adopted outside the tenant's namespace: dropIdentityIfLast reads
			}
			left, lerr := c.imagesLeft(conn, id.Tenant)
			if lerr != nil {
				return nil // dropIdentityIfLast reads again
			}
			identityDone = true
			if left {
				return nil
			}
			user, err := ceph.IdentityUser(c.name, id.Tenant)
			if err != nil {
				return err
			}
			return c.removeIdentity(conn, user, id.Tenant)
		})
	})
}

// deleteState is what DeleteVolume needs to know of an image, read in one read-only open
// (each open is several round trips).
type deleteState struct {
	*imageState
	csiSnaps, tmpSnaps []string
	watches            *watchState // nil when not read (another backend's image)
	watchErr           error
}

func (c *Controller) readForDelete(conn cluster, io ioctx, name string) (*deleteState, error) {
	if st, err := c.glanceForDelete(conn, io, name); st != nil || err != nil {
		return st, err
	}
	st := &deleteState{}
	err := inImage(io, name, func(img image) (err error) {
		if st.imageState, err = readImageOf(img, true); err != nil || st.hasRecord && st.record.Backend != c.name {
			return err
		}
		st.csiSnaps, st.tmpSnaps = sortSnaps(img, st.snaps)
		st.watches, st.watchErr = readWatchesOf(conn, io, img, name)
		return nil
	})
	return st, err
}

// glanceForDelete reads what a delete needs of a plain image without opening it (an open
// is about ten round trips: 9 ms of a 47 ms delete on the local cluster): its ID, then its
// record and its number of snapshots in one read of its header, then who answers a notify
// on the header. It answers neither state nor error, for readForDelete's full read, for an
// image it cannot find whole (a half created or half removed one), one with snapshots, one
// with a corrupt record, and one another client has open (the full read names the client's
// address); a failure of the storage (a timeout) is answered as such, not read twice. It
// sees no stale watch record, which answers no notify: the mgr's purge fails busy on one,
// and the sweep drops it.
func (c *Controller) glanceForDelete(conn cluster, io ioctx, name string) (*deleteState, error) {
	id, h, err := readHeaderOf(io, name)
	if err != nil || h.snaps > 0 {
		return nil, fullRead(err, "header of image "+name)
	}
	is, err := h.state(name)
	if err != nil {
		return nil, nil // the full read reports it corrupt
	}
	st := &deleteState{imageState: is}
	if st.hasRecord && st.record.Backend != c.name {
		return st, nil
	}
	answered, err := askWatchers(io, id)
	if err != nil {
		return nil, classify(err, "ask the clients of "+name)
	}
	st.watches = &watchState{id: id}
	for w := range answered {
		if w[0] != conn.InstanceID() {
			return nil, nil
		}
		st.watches.own = append(st.watches.own, librbd.ImageWatcher{Id: int64(w[0]), Cookie: w[1]})
	}
	return st, nil
}

// fullRead is nil, for readForDelete's full read, when err is nil or says an object is
// missing; otherwise err classified.
func fullRead(err error, what string) error {
	if err == nil || isNotFound(err) {
		return nil
	}
	return classify(err, what)
}

func (c *Controller) GetVolume(ctx context.Context, id volid.Volume, secrets map[string]string) (*backend.Volume, error) {
	if id.Backend != c.name {
		return nil, backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	var vol *backend.Volume
	err := c.storage.Do(ctx, secrets, func(conn connection) error {
		io, pool, err := openVolumePool(conn, id)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		st, err := peekImage(io, volumeImage(id))
		if err != nil {
			return asNotFound(err, id)
		}
		if !st.hasRecord || st.record.Backend != c.name {
			return backend.Errorf(backend.NotFound, "volume %s does not exist", id)
		}
		vol = c.volume(id, int64(st.size), st.record, pool)
		return nil
	})
	return vol, err
}

// ListVolumes lists the backend's volumes in every pool of the cluster (a StorageClass may
// override the pool), in the tenant's namespace, or in all namespaces when tenant is "",
// and the images adopted in place.
func (c *Controller) ListVolumes(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	var out []*backend.Volume
	err := c.storage.Do(ctx, nil, func(conn connection) error {
		adopted, err := c.adoptedVolumes(conn, tenant)
		if err != nil {
			return err
		}
		out = append(out, adopted...)
		return c.eachNamespaceImages(conn, tenant, func(io ioctx, pool, ns string, hashes []string) error {
			vols, err := backend.ReadEach(len(hashes), pageReaders, func(i int) (*backend.Volume, error) {
				return c.listedVolume(io, pool, ns, hashes[i])
			})
			out = append(out, vols...)
			return err
		})
	})
	return out, err
}

// eachImage calls fn for every csi-vol- image in the tenant's namespace (all namespaces for
// "") of every pool that holds RBD namespaces.
func (c *Controller) eachImage(conn cluster, tenant string, fn func(io ioctx, pool, ns, hash string) error) error {
	return c.eachNamespaceImages(conn, tenant, func(io ioctx, pool, ns string, hashes []string) error {
		for _, h := range hashes {
			if err := fn(io, pool, ns, h); err != nil {
				return err
			}
		}
		return nil
	})
}

// eachNamespaceImages is eachImage a namespace at a time: fn gets the hashes of the
// namespace's csi-vol- images, in the order of its image directory, to read them at once.
func (c *Controller) eachNamespaceImages(conn cluster, tenant string, fn func(io ioctx, pool, ns string, hashes []string) error) error {
	return c.eachNamespace(conn, tenant, func(io ioctx, pool, ns string) error {
		names, err := io.ImageNames()
		if err != nil {
			return c.imageListError(err, pool, ns)
		}
		var hashes []string
		for _, n := range names {
			if h := volumeHashOf(n); h != "" {
				hashes = append(hashes, h)
			}
		}
		return fn(io, pool, ns, hashes)
	})
}

// imageListError is what a failed read of a namespace's image directory means to a walk
// over the tenant's images: a namespace without images, or a pool other than the
// configured one, holds none of them; the configured pool's other errors count.
func (c *Controller) imageListError(err error, pool, ns string) error {
	if isNotFound(err) || pool != c.cfg.Pool {
		return nil
	}
	return classify(err, fmt.Sprintf("list images in %s/%s", pool, ns))
}

// eachNamespace calls fn for the tenant's namespace (every tenant's for "") of every pool
// that holds RBD namespaces; the configured pool's errors count, other pools (CephFS,
// device health) are skipped when they hold no RBD directory.
func (c *Controller) eachNamespace(conn cluster, tenant string, fn func(io ioctx, pool, ns string) error) error {
	pools, err := conn.ListPools()
	if err != nil {
		return classify(err, "list pools")
	}
	for _, pool := range pools {
		io, err := openPool(conn, pool, "")
		if err != nil {
			if pool == c.cfg.Pool {
				return err
			}
			continue
		}
		nss := []string{tenant}
		if tenant == "" {
			if nss, err = io.Namespaces(); err != nil {
				io.Destroy()
				if pool == c.cfg.Pool && !isNotFound(err) {
					return classify(err, "list RADOS namespaces of pool "+pool)
				}
				continue
			}
		}
		for _, ns := range nss {
			if volid.ValidTenant(ns) != nil {
				continue
			}
			io.SetNamespace(ns)
			if err := fn(io, pool, ns); err != nil {
				io.Destroy()
				return err
			}
		}
		io.Destroy()
	}
	return nil
}

// ExpandVolume grows the image; a smaller request leaves it as it is.
func (c *Controller) ExpandVolume(ctx context.Context, id volid.Volume, requiredBytes, limitBytes int64, secrets map[string]string) (int64, bool, error) {
	if id.Backend != c.name {
		return 0, false, backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	size, err := roundSize(requiredBytes, limitBytes)
	if err != nil {
		return 0, false, err
	}
	var cur uint64
	err = c.storage.Do(ctx, secrets, func(conn connection) error {
		io, _, err := openVolumePool(conn, id)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		name := volumeImage(id)
		return asNotFound(inImageRW(io, name, func(img image) error {
			if cur, err = img.Size(); err != nil {
				return classify(err, "size of image "+name)
			}
			if cur >= uint64(size) {
				return nil
			}
			if err := img.Resize(uint64(size)); err != nil {
				return classify(err, "resize image "+name)
			}
			cur = uint64(size)
			return nil
		}), id)
	})
	if err != nil {
		return 0, false, err
	}
	// A block volume needs the node as well: a loop device over rbd-fuse keeps its old size
	// until NodeExpandVolume refreshes it (krbd and rbd-nbd devices follow by themselves).
	return int64(cur), true, nil
}
