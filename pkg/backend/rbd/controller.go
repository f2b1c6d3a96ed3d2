// Package rbd is the Ceph RBD backend: images in a per-tenant RADOS namespace of a pool on
// the controller side (go-ceph librbd), and krbd, rbd-nbd or rbd-fuse plus a loop device on
// the node side.
package rbd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Controller provisions RBD images for one configured backend.
type Controller struct {
	name  string
	cfg   config.RBD
	conns *ceph.Pool

	// namespaces remembers RADOS namespaces known to exist ("pool/ns"), saving a round trip
	// per CreateVolume; a namespace removed behind our back is re-created on ENOENT.
	mu         sync.Mutex
	namespaces map[string]bool

	taskWait time.Duration // see SetTaskWait
}

var _ backend.Controller = (*Controller)(nil)

// NewController returns the controller side of an rbd backend.
func NewController(cfg *config.Backend, conns *ceph.Pool) (*Controller, error) {
	if cfg == nil || cfg.RBD == nil {
		return nil, fmt.Errorf("rbd backend: no rbd config section")
	}
	if cfg.Kind != backend.KindRBD {
		return nil, fmt.Errorf("rbd backend %q: kind is %q", cfg.Name, cfg.Kind)
	}
	if conns == nil {
		return nil, fmt.Errorf("rbd backend %q: no connection pool", cfg.Name)
	}
	if _, err := resolveOptions(nil, cfg.RBD.Pool, cfg.RBD.ImageFeatures, cfg.RBD.Mounter); err != nil {
		return nil, fmt.Errorf("rbd backend %q config: %v", cfg.Name, err)
	}
	return &Controller{name: cfg.Name, cfg: *cfg.RBD, conns: conns, namespaces: map[string]bool{}, taskWait: defaultTaskWait}, nil
}

func (c *Controller) Name() string { return c.name }
func (c *Controller) Kind() string { return backend.KindRBD }
func (c *Controller) Close()       {}

func (c *Controller) ParameterKeys() []string {
	return []string{ParamPool, ParamImageFeatures, ParamMounter}
}

func (c *Controller) monitors() string { return strings.Join(c.cfg.Monitors, ",") }

// run connects with the request's (or configured) credentials and calls fn in one Do on
// the pooled connection, so that every librados/librbd resource fn opens is also released
// on fn's goroutine even when the request's deadline passes first. Every call fn makes,
// mgr and mon commands included, runs on that pooled handle inside that Do.
func (c *Controller) run(ctx context.Context, secrets map[string]string, fn func(conn *rados.Conn) error) error {
	cred, err := ceph.CredentialsFor(c.cfg.Credentials, secrets)
	if err != nil {
		return err
	}
	conn, err := c.conns.Conn(ctx, c.name, c.cfg.CephCluster, cred)
	if err == nil {
		err = conn.Do(ctx, func() error { return fn(conn.Rados()) })
	}
	if err != nil && backend.CodeOf(err) == backend.Unavailable && !strings.Contains(err.Error(), c.monitors()) {
		return backend.Errorf(backend.Unavailable, "Ceph cluster %s (monitors %s): %w", c.cfg.ClusterID, c.monitors(), err)
	}
	return err
}

// rbdHints complete the shared Ceph errno rules for images.
var rbdHints = ceph.Hints{
	Caps: `rbd caps on the pool (mon "profile rbd, allow command \"mgr dump\"", osd "profile rbd pool=<pool>", mgr "profile rbd pool=<pool>")`,
	Busy: "the image is still mapped or watched by a client; unstage it on its node first",
}

// classify turns a librados/librbd error into a StorageError that says what to do.
func classify(err error, what string) error { return ceph.Classify(err, what, rbdHints) }

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, librbd.ErrNotFound) || errors.Is(err, rados.ErrNotFound) || ceph.Errno(err) == syscall.ENOENT
}

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
	err = c.run(ctx, req.Secrets, func(conn *rados.Conn) error {
		io, err := openPool(conn, opts.Pool, req.Tenant)
		if err != nil {
			return err
		}
		defer io.Destroy()
		id := req.ID(c.name, strconv.FormatInt(io.GetPoolID(), 10))
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
		if err := c.ensureNamespace(io, opts.Pool, req.Tenant); err != nil {
			return err
		}
		rec, cur, err := c.provision(ctx, conn, io, name, uint64(size), opts, req)
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
func (c *Controller) provision(ctx context.Context, conn *rados.Conn, io *rados.IOContext, name string, size uint64, opts classOptions, req *backend.VolumeRequest) (volumeRecord, uint64, error) {
	want := newRecord(c.name, req)
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
	// Earlier attempts' images discarded under this name have their purge queued, in case
	// the attempt that moved them to the trash died before queueing it.
	if err := purgeTrashed(conn, io, opts.Pool, req.Tenant, name); err != nil {
		return want, 0, err
	}
	cur, err := growClone(io, name, size)
	if err != nil {
		return want, 0, err
	}
	if req.SourceSnapshot != nil || req.SourceVolume != nil {
		// librbd copies the parent's metadata to a clone, its publish records too.
		if err := dropImageMetadata(io, name, backend.IsPublishRecordKey); err != nil {
			return want, 0, err
		}
	}
	if err := setImageMetadata(io, name, recordKey, want.encode()); err != nil {
		return want, 0, err
	}
	return want, cur, nil
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
		v.Context = volumeContext(c.cfg.ClusterID, pool, id.Tenant, imageName(id.Hash), opts)
	}
	return v
}

// DeleteVolume moves the image to the trash and has the Ceph mgr purge it (see discard).
// An image that still has CSI snapshots is refused with FAILED_PRECONDITION: snapshots live
// on the image, so they are not independent of it; so is one a node still has open.
func (c *Controller) DeleteVolume(ctx context.Context, id volid.Volume, secrets map[string]string) error {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	name := imageName(id.Hash)
	return c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, pool, err := openVolumePool(conn, id)
		if err != nil {
			if backend.IsNotFound(err) {
				return nil
			}
			return err
		}
		defer io.Destroy()
		st, err := readImage(io, name, true)
		if backend.IsNotFound(err) {
			// Gone, or half gone: a name whose image cannot be opened, or a trash entry
			// whose purge was never queued.
			return discard(conn, io, pool, id.Tenant, name)
		}
		if err != nil {
			return err
		}
		if st.hasRecord && st.record.Backend != c.name {
			return nil
		}
		if err := dropTemporarySnaps(ctx, conn, io, name, id, st.snaps); err != nil {
			return err
		}
		if err := checkUnused(conn, io, name, id); err != nil {
			return err
		}
		if err := late(ctx, "remove image "+name); err != nil {
			return err
		}
		return discard(conn, io, pool, id.Tenant, name)
	})
}

func (c *Controller) GetVolume(ctx context.Context, id volid.Volume, secrets map[string]string) (*backend.Volume, error) {
	if id.Backend != c.name {
		return nil, backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	var vol *backend.Volume
	err := c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, pool, err := openVolumePool(conn, id)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		st, err := readImage(io, imageName(id.Hash), false)
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

func asNotFound(err error, id fmt.Stringer) error {
	if backend.IsNotFound(err) {
		return backend.Errorf(backend.NotFound, "%s does not exist: %v", id, err)
	}
	return err
}

// ListVolumes lists the backend's volumes in every pool of the cluster (a StorageClass may
// override the pool), in the tenant's namespace, or in all namespaces when tenant is "".
func (c *Controller) ListVolumes(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	var out []*backend.Volume
	err := c.run(ctx, nil, func(conn *rados.Conn) error {
		return c.eachImage(conn, tenant, func(io *rados.IOContext, pool, ns, hash string) error {
			v, err := c.listedVolume(io, pool, ns, hash)
			if v != nil {
				out = append(out, v)
			}
			return err
		})
	})
	return out, err
}

// eachImage calls fn for every csi-vol- image in the tenant's namespace (all namespaces for
// "") of every pool that holds RBD namespaces.
func (c *Controller) eachImage(conn *rados.Conn, tenant string, fn func(io *rados.IOContext, pool, ns, hash string) error) error {
	return c.eachNamespace(conn, tenant, func(io *rados.IOContext, pool, ns string) error {
		names, err := librbd.GetImageNames(io)
		if err != nil {
			if isNotFound(err) || pool != c.cfg.Pool {
				return nil
			}
			return classify(err, fmt.Sprintf("list images in %s/%s", pool, ns))
		}
		for _, n := range names {
			if h := volumeHashOf(n); h != "" {
				if err := fn(io, pool, ns, h); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// eachNamespace calls fn for the tenant's namespace (every tenant's for "") of every pool
// that holds RBD namespaces; the configured pool's errors count, other pools (CephFS,
// device health) are skipped when they hold no RBD directory.
func (c *Controller) eachNamespace(conn *rados.Conn, tenant string, fn func(io *rados.IOContext, pool, ns string) error) error {
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
			if nss, err = librbd.NamespaceList(io); err != nil {
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
	err = c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, _, err := openVolumePool(conn, id)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		name := imageName(id.Hash)
		img, err := librbd.OpenImage(io, name, librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open image "+name), id)
		}
		defer img.Close()
		if cur, err = img.GetSize(); err != nil {
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
	})
	if err != nil {
		return 0, false, err
	}
	// A block volume needs the node as well: a loop device over rbd-fuse keeps its old size
	// until NodeExpandVolume refreshes it (krbd and rbd-nbd devices follow by themselves).
	return int64(cur), true, nil
}

func (c *Controller) CreateSnapshot(ctx context.Context, source volid.Volume, name string, params, secrets map[string]string) (*backend.Snapshot, error) {
	if source.Backend != c.name {
		return nil, backend.Errorf(backend.NotFound, "source volume %s is not on backend %q", source, c.name)
	}
	hash := volid.Hash(name)
	sn := snapName(hash)
	var snap *backend.Snapshot
	err := c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, pool, err := openVolumePool(conn, source)
		if err != nil {
			return asNotFound(err, source)
		}
		defer io.Destroy()
		// Read-only first: a retry finds its snapshot without a watch on the image.
		ro, err := librbd.OpenImageReadOnly(io, imageName(source.Hash), librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open source image"), source)
		}
		id := volid.Snapshot{Volume: source, SnapHash: hash}
		s, err := snapshotOf(ro, id)
		ro.Close()
		if err == nil {
			snap = s
			return nil
		} else if !backend.IsNotFound(err) {
			return err
		}
		// The same name on another volume of the tenant is a different snapshot.
		err = c.eachImage(conn, source.Tenant, func(io *rados.IOContext, p, ns, h string) error {
			if p != pool || h == source.Hash {
				return nil
			}
			other, err := librbd.OpenImageReadOnly(io, imageName(h), librbd.NoSnapshot)
			if err != nil {
				return nil
			}
			defer other.Close()
			snaps, err := other.GetSnapshotNames()
			if err != nil {
				return classify(err, "list snapshots of "+imageName(h))
			}
			for _, s := range snaps {
				if s.Name == sn {
					return backend.Errorf(backend.AlreadyExists, "snapshot %q already exists on another volume (image %s/%s/%s)", name, p, ns, imageName(h))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := late(ctx, "snapshot "+sn); err != nil {
			return err
		}
		// Protected now so that clones work with clone format 1 too.
		if err := ensureSnap(io, imageName(source.Hash), sn); err != nil {
			return asNotFound(err, source)
		}
		img, err := librbd.OpenImageReadOnly(io, imageName(source.Hash), librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open source image"), source)
		}
		defer img.Close()
		snap, err = snapshotOf(img, id)
		return err
	})
	return snap, err
}

// snapshotOf describes snapshot id on its open image; NotFound when absent.
func snapshotOf(img *librbd.Image, id volid.Snapshot) (*backend.Snapshot, error) {
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return nil, classify(err, "list snapshots of "+img.GetName())
	}
	want := snapName(id.SnapHash)
	for _, s := range snaps {
		if s.Name != want {
			continue
		}
		ts, err := img.GetSnapTimestamp(s.Id)
		if err != nil {
			return nil, classify(err, "timestamp of snapshot "+want)
		}
		return &backend.Snapshot{ID: id, SizeBytes: int64(s.Size), CreatedAt: time.Unix(ts.Sec, ts.Nsec).UTC(), Ready: true}, nil
	}
	return nil, backend.Errorf(backend.NotFound, "snapshot %s does not exist", id)
}

// DeleteSnapshot has the Ceph mgr flatten the snapshot's clones first (Pending until it
// has), so volumes restored from it stay.
func (c *Controller) DeleteSnapshot(ctx context.Context, id volid.Snapshot, secrets map[string]string) error {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "snapshot %s is not on backend %q", id, c.name)
	}
	return c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, _, err := openVolumePool(conn, id.Volume)
		if err != nil {
			if backend.IsNotFound(err) {
				return nil
			}
			return err
		}
		defer io.Destroy()
		img, err := librbd.OpenImage(io, imageName(id.Hash), librbd.NoSnapshot)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return classify(err, "open image "+imageName(id.Hash))
		}
		defer img.Close()
		if err := late(ctx, "remove snapshot "+snapName(id.SnapHash)); err != nil {
			return err
		}
		return removeSnap(ctx, c.taskWait, conn, img, snapName(id.SnapHash))
	})
}

func (c *Controller) GetSnapshot(ctx context.Context, id volid.Snapshot) (*backend.Snapshot, error) {
	if id.Backend != c.name {
		return nil, backend.Errorf(backend.NotFound, "snapshot %s is not on backend %q", id, c.name)
	}
	var snap *backend.Snapshot
	err := c.run(ctx, nil, func(conn *rados.Conn) error {
		io, _, err := openVolumePool(conn, id.Volume)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		img, err := librbd.OpenImageReadOnly(io, imageName(id.Hash), librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open image"), id)
		}
		defer img.Close()
		snap, err = snapshotOf(img, id)
		return err
	})
	return snap, err
}

func (c *Controller) ListSnapshots(ctx context.Context, source *volid.Volume) ([]*backend.Snapshot, error) {
	var out []*backend.Snapshot
	list := func(io *rados.IOContext, vol volid.Volume) error {
		img, err := librbd.OpenImageReadOnly(io, imageName(vol.Hash), librbd.NoSnapshot)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return classify(err, "open image "+imageName(vol.Hash))
		}
		defer img.Close()
		snaps, err := img.GetSnapshotNames()
		if err != nil {
			return classify(err, "list snapshots of "+img.GetName())
		}
		for _, s := range snaps {
			h := snapHashOf(s.Name)
			if h == "" {
				continue
			}
			snap, err := snapshotOf(img, volid.Snapshot{Volume: vol, SnapHash: h})
			if err != nil {
				return err
			}
			out = append(out, snap)
		}
		return nil
	}
	err := c.run(ctx, nil, func(conn *rados.Conn) error {
		if source != nil {
			if source.Backend != c.name {
				return nil
			}
			io, _, err := openVolumePool(conn, *source)
			if err != nil {
				if backend.IsNotFound(err) {
					return nil
				}
				return err
			}
			defer io.Destroy()
			return list(io, *source)
		}
		return c.eachImage(conn, "", func(io *rados.IOContext, pool, ns, hash string) error {
			vol := volid.Volume{Backend: c.name, Tenant: ns, Location: strconv.FormatInt(io.GetPoolID(), 10), Hash: hash}
			st, err := readImage(io, imageName(hash), false)
			if err != nil || !st.hasRecord || st.record.Backend != c.name {
				return nil
			}
			return list(io, vol)
		})
	})
	return out, err
}

// Capacity reports the pool's max_avail from the monitors' df: what new volumes can still use.
func (c *Controller) Capacity(ctx context.Context, params map[string]string) (int64, error) {
	pool := params[ParamPool]
	if pool == "" {
		pool = c.cfg.Pool
	}
	var avail int64
	err := c.run(ctx, nil, func(conn *rados.Conn) error {
		all, err := ceph.PoolsAvailable(conn)
		if err != nil {
			return classify(err, "ceph df")
		}
		a, err := maxAvail(all, pool)
		avail = a
		return err
	})
	return avail, err
}

// Probe asks the monitors for the cluster's fsid-bearing status, the cheapest round trip that
// proves the monitors answer.
func (c *Controller) Probe(ctx context.Context) error {
	if _, err := ceph.CredentialsFor(c.cfg.Credentials, nil); err != nil {
		// Without configured credentials only requests bring keys; nothing to probe with.
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.run(ctx, nil, func(conn *rados.Conn) error {
		_, _, err := conn.MonCommand([]byte(`{"prefix":"mon stat","format":"json"}`))
		return classify(err, "mon stat")
	})
}
