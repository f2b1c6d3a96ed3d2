package rbd

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/ceph"
)

// The controller reaches Ceph only through cluster, ioctx and image: go-ceph's librados and
// librbd on a pooled connection in production (cephCluster below), an in-memory cluster in
// unit tests (fake_test.go). Errors are go-ceph's (errno-bearing); callers classify them.

// connection is one pooled connection, the backend.Handle of the controller's
// backend.Storage: every call on it runs inside Do, which bounds it by the request and
// releases what it opened on the same goroutine.
type connection interface {
	Do(ctx context.Context, fn func() error) error
	cluster
}

// cluster is what the controller needs of a Ceph client handle.
type cluster interface {
	// OpenPool opens an I/O context on a pool by name, in its default namespace.
	OpenPool(name string) (ioctx, error)
	PoolName(id int64) (string, error)
	ListPools() ([]string, error)
	MonCommand(args []byte) ([]byte, string, error)
	MgrCommand(args [][]byte) ([]byte, string, error)
	// InstanceID is this client's global ID (client.N), whose watches are our own.
	InstanceID() uint64
	// Replace has the pool replace this client once its calls have returned: its shutdown
	// is the only way to close an image librbd left open on it (see leakedOpen).
	Replace(why string)
}

// ioctx is an I/O context on one pool, in one RADOS namespace.
type ioctx interface {
	SetNamespace(ns string)
	ID() int64
	Destroy()
	NamespaceExists(ns string) (bool, error)
	CreateNamespace(ns string) error
	Namespaces() ([]string, error)
	ImageNames() ([]string, error)
	// ImageNamesAfter reads, sorted, at most max image names that sort after after from
	// the namespace's image directory (its name_ omap keys): one read of one page, where
	// ImageNames reads the whole directory.
	ImageNamesAfter(after string, max int64) ([]string, error)
	CreateImage(name string, size, features uint64) error
	// CloneImage clones parent@snap of this pool into image name of dst.
	CloneImage(parent, snap string, dst ioctx, name string, features uint64) error
	// OpenImage opens an image at its head; writable registers a watch on its header.
	OpenImage(name string, writable bool) (image, error)
	// ImageID reads an image's ID from its rbd_id object: one read, where an open takes
	// several round trips.
	ImageID(name string) (string, error)
	// ReadHeader reads, without opening the image, the value of its metadata key, its
	// snapshot count and its size, in one read of its header rbd_header.<id>.
	ReadHeader(id, key string) (imageHeader, error)
	// OpenTrashed opens an image in the trash read-only, by ID.
	OpenTrashed(id string) (image, error)
	TrashImage(name string) error
	RemoveImage(name string) error
	TrashEntries() ([]librbd.TrashInfo, error)
	// RemoveTrashed removes a trash entry and what is left of its image, by ID, in this
	// call (librbd's forced trash remove), not in the mgr.
	RemoveTrashed(id string) error
	// Exec runs one rbd object class method on an object, as one write.
	Exec(oid, method string, in []byte) error
	Notify(oid string, timeout time.Duration) ([]rados.NotifyAck, []rados.NotifyTimeout, error)
	// ReadObject copies an image header object (omap, xattrs) with its version.
	ReadObject(oid string) (*objectCopy, error)
	// ReplaceObject rewrites an object as copied, failing if it changed since.
	ReplaceObject(oid string, cp *objectCopy) error
}

// objectCopy is an image header object as read, to rewrite it without its watch records.
type objectCopy struct {
	omap, xattrs map[string][]byte
	version      uint64
	size         uint64
}

// image is an open image.
type image interface {
	Close() error
	Name() string
	ID() (string, error)
	Size() (uint64, error)
	Features() (uint64, error)
	Resize(size uint64) error
	Metadata(key string) (string, error)
	ListMetadata() (map[string]string, error)
	SetMetadata(key, value string) error
	RemoveMetadata(key string) error
	Parent() (*librbd.ParentInfo, error)
	Snapshots() ([]librbd.SnapInfo, error)
	SnapTime(id uint64) (time.Time, error)
	// InSnapTrash says whether a snapshot is in librbd's trash namespace.
	InSnapTrash(id uint64) (bool, error)
	CreateSnapshot(name string) error
	ProtectSnapshot(name string) error
	SnapshotProtected(name string) (bool, error)
	UnprotectSnapshot(name string) error
	RemoveSnapshot(name string) error
	// Children lists the clones of snapshot snap, those in the trash included.
	Children(snap string) ([]librbd.ImageSpec, error)
	Watchers() ([]librbd.ImageWatcher, error)
	Lockers() ([]librbd.Locker, error)
	BreakLock(client, cookie string) error
}

// inImage opens an image read-only (no watch on its header) for fn and closes it after;
// the open's error is classified, NotFound when the image is absent.
func inImage(io ioctx, name string, fn func(img image) error) error {
	return withOpenImage(io, name, false, fn)
}

// inImageRW is inImage for an image opened for writing (a watch on its header meanwhile).
func inImageRW(io ioctx, name string, fn func(img image) error) error {
	return withOpenImage(io, name, true, fn)
}

func withOpenImage(io ioctx, name string, writable bool, fn func(img image) error) error {
	img, err := io.OpenImage(name, writable)
	if err != nil {
		return classify(err, "open image "+name)
	}
	defer img.Close()
	return fn(img)
}

// beside is a call running beside others on the same connection; wait must be called
// before the connection or I/O context it uses goes.
type beside[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// start runs fn beside the caller's next calls.
func start[T any](fn func() (T, error)) *beside[T] {
	b := &beside[T]{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.val, b.err = fn()
	}()
	return b
}

// wait returns fn's answer once it has come; it may be called more than once.
func (b *beside[T]) wait() (T, error) {
	<-b.done
	return b.val, b.err
}

// cephConn is a pooled go-ceph connection.
type cephConn struct{ *ceph.Conn }

func (c cephConn) OpenPool(name string) (ioctx, error) {
	io, err := c.Rados().OpenIOContext(name)
	if err != nil {
		return nil, err
	}
	return cephPool{io}, nil
}

func (c cephConn) PoolName(id int64) (string, error) { return c.Rados().GetPoolByID(id) }
func (c cephConn) ListPools() ([]string, error)      { return c.Rados().ListPools() }
func (c cephConn) InstanceID() uint64                { return c.Rados().GetInstanceID() }

type cephPool struct{ io *rados.IOContext }

func (p cephPool) SetNamespace(ns string) { p.io.SetNamespace(ns) }
func (p cephPool) ID() int64              { return p.io.GetPoolID() }
func (p cephPool) Destroy()               { p.io.Destroy() }

func (p cephPool) NamespaceExists(ns string) (bool, error) { return librbd.NamespaceExists(p.io, ns) }
func (p cephPool) CreateNamespace(ns string) error         { return librbd.NamespaceCreate(p.io, ns) }
func (p cephPool) Namespaces() ([]string, error)           { return librbd.NamespaceList(p.io) }
func (p cephPool) ImageNames() ([]string, error)           { return librbd.GetImageNames(p.io) }

// rbdDirectory is the object holding a namespace's image directory; imageKey prefixes
// its keys by image name (librbd's RBD_DIRECTORY and name_ keys); metadataPrefix prefixes
// an image header's keys of image metadata (cls_rbd's metadata_).
const (
	rbdDirectory   = "rbd_directory"
	imageKey       = "name_"
	metadataPrefix = "metadata_"
)

func (p cephPool) ImageNamesAfter(after string, max int64) ([]string, error) {
	start := ""
	if after != "" {
		start = imageKey + after
	}
	keys, err := p.io.GetOmapValues(rbdDirectory, start, imageKey, max)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, strings.TrimPrefix(k, imageKey))
	}
	sort.Strings(names)
	return names, nil
}

func (p cephPool) TrashImage(name string) error  { return librbd.GetImage(p.io, name).Trash(0) }
func (p cephPool) RemoveImage(name string) error { return librbd.RemoveImage(p.io, name) }
func (p cephPool) TrashEntries() ([]librbd.TrashInfo, error) {
	return librbd.GetTrashList(p.io)
}
func (p cephPool) RemoveTrashed(id string) error { return librbd.TrashRemove(p.io, id, true) }

func (p cephPool) CreateImage(name string, size, features uint64) error {
	ro, err := imageOptions(features)
	if err != nil {
		return err
	}
	defer ro.Destroy()
	return librbd.CreateImage(p.io, name, size, ro)
}

func (p cephPool) CloneImage(parent, snap string, dst ioctx, name string, features uint64) error {
	ro, err := imageOptions(features)
	if err != nil {
		return err
	}
	defer ro.Destroy()
	return librbd.CloneImage(p.io, parent, snap, dst.(cephPool).io, name, ro)
}

func imageOptions(features uint64) (*librbd.ImageOptions, error) {
	ro := librbd.NewRbdImageOptions()
	if err := ro.SetUint64(librbd.ImageOptionFeatures, features); err != nil {
		ro.Destroy()
		return nil, err
	}
	return ro, nil
}

func (p cephPool) OpenImage(name string, writable bool) (image, error) {
	open := librbd.OpenImageReadOnly
	if writable {
		open = librbd.OpenImage
	}
	img, err := open(p.io, name, librbd.NoSnapshot)
	if err != nil {
		return nil, err
	}
	return cephImage{img}, nil
}

func (p cephPool) ImageID(name string) (string, error) {
	op := rados.CreateReadOp()
	defer op.Release()
	step := op.Exec("rbd", "get_id", nil)
	if err := op.Operate(p.io, "rbd_id."+name, rados.OperationNoFlag); err != nil {
		return "", err
	}
	out, err := step.Bytes()
	if err != nil {
		return "", err
	}
	id, _, ok := decodeString(out)
	if !ok {
		return "", fmt.Errorf("rbd_id.%s: undecodable ID %q", name, out)
	}
	return id, nil
}

// imageHeader is what one read of an image's header tells without opening the image.
type imageHeader struct {
	meta  []byte // the value of the metadata key asked for; nil when unset
	snaps int    // how many snapshots the image has
	size  uint64 // the size of its head
}

// noSnap is librados' CEPH_NOSNAP, the snapshot ID of an image's head.
const noSnap = ^uint64(1)

func (p cephPool) ReadHeader(id, key string) (imageHeader, error) {
	op := rados.CreateReadOp()
	defer op.Release()
	meta := op.GetOmapValuesByKeys([]string{metadataPrefix + key}) // cls_rbd's metadata_set keys
	snapc := op.Exec("rbd", "get_snapcontext", nil)
	head := binary.LittleEndian.AppendUint64(nil, noSnap)
	size := op.Exec("rbd", "get_size", head) // cls_rbd: the order (u8), then the size (u64)
	if err := op.Operate(p.io, "rbd_header."+id, rados.OperationNoFlag); err != nil {
		return imageHeader{}, err
	}
	var h imageHeader
	switch kv, err := meta.Next(); {
	case err != nil:
		return h, err
	case kv != nil:
		h.meta = append([]byte(nil), kv.Value...)
	}
	out, err := snapc.Bytes()
	if err != nil {
		return h, err
	}
	// A SnapContext: its sequence number (u64), then its snapshot IDs (u32 count, u64 each).
	if len(out) < 12 {
		return h, fmt.Errorf("rbd_header.%s: undecodable snapshot context %x", id, out)
	}
	h.snaps = int(binary.LittleEndian.Uint32(out[8:12]))
	if out, err = size.Bytes(); err != nil {
		return h, err
	}
	if len(out) < 9 {
		return h, fmt.Errorf("rbd_header.%s: undecodable size %x", id, out)
	}
	h.size = binary.LittleEndian.Uint64(out[1:9])
	return h, nil
}

func (p cephPool) OpenTrashed(id string) (image, error) {
	img, err := librbd.OpenImageByIdReadOnly(p.io, id, librbd.NoSnapshot)
	if err != nil {
		return nil, err
	}
	return cephImage{img}, nil
}

func (p cephPool) Exec(oid, method string, in []byte) error {
	op := rados.CreateWriteOp()
	defer op.Release()
	op.Exec("rbd", method, in)
	return op.Operate(p.io, oid, rados.OperationNoFlag)
}

func (p cephPool) Notify(oid string, timeout time.Duration) ([]rados.NotifyAck, []rados.NotifyTimeout, error) {
	return p.io.NotifyWithTimeout(oid, nil, timeout)
}

func (p cephPool) ReadObject(oid string) (*objectCopy, error) {
	cp := &objectCopy{}
	var err error
	if cp.omap, err = p.io.GetAllOmapValues(oid, "", "", 512); err != nil {
		return nil, err
	}
	if cp.version, err = p.io.GetLastVersion(); err != nil {
		return nil, err
	}
	if cp.xattrs, err = p.io.ListXattrs(oid); err != nil {
		return nil, err
	}
	stat, err := p.io.Stat(oid)
	if err != nil {
		return nil, err
	}
	cp.size = stat.Size
	return cp, nil
}

func (p cephPool) ReplaceObject(oid string, cp *objectCopy) error {
	op := rados.CreateWriteOp()
	defer op.Release()
	op.AssertVersion(cp.version)
	op.Remove()
	op.Create(rados.CreateIdempotent)
	op.SetOmap(cp.omap)
	for k, v := range cp.xattrs {
		op.SetXattr(k, v)
	}
	return op.Operate(p.io, oid, rados.OperationNoFlag)
}

type cephImage struct{ img *librbd.Image }

func (i cephImage) Close() error                             { return i.img.Close() }
func (i cephImage) Name() string                             { return i.img.GetName() }
func (i cephImage) ID() (string, error)                      { return i.img.GetId() }
func (i cephImage) Size() (uint64, error)                    { return i.img.GetSize() }
func (i cephImage) Features() (uint64, error)                { return i.img.GetFeatures() }
func (i cephImage) Resize(size uint64) error                 { return i.img.Resize(size) }
func (i cephImage) Metadata(key string) (string, error)      { return i.img.GetMetadata(key) }
func (i cephImage) ListMetadata() (map[string]string, error) { return i.img.ListMetadata() }
func (i cephImage) SetMetadata(key, value string) error      { return i.img.SetMetadata(key, value) }
func (i cephImage) RemoveMetadata(key string) error          { return i.img.RemoveMetadata(key) }
func (i cephImage) Parent() (*librbd.ParentInfo, error)      { return i.img.GetParent() }
func (i cephImage) Snapshots() ([]librbd.SnapInfo, error)    { return i.img.GetSnapshotNames() }
func (i cephImage) Watchers() ([]librbd.ImageWatcher, error) { return i.img.ListWatchers() }
func (i cephImage) BreakLock(client, cookie string) error    { return i.img.BreakLock(client, cookie) }
func (i cephImage) ProtectSnapshot(name string) error        { return i.img.GetSnapshot(name).Protect() }
func (i cephImage) UnprotectSnapshot(name string) error      { return i.img.GetSnapshot(name).Unprotect() }
func (i cephImage) RemoveSnapshot(name string) error         { return i.img.GetSnapshot(name).Remove() }
func (i cephImage) SnapshotProtected(name string) (bool, error) {
	return i.img.GetSnapshot(name).IsProtected()
}

func (i cephImage) CreateSnapshot(name string) error {
	_, err := i.img.CreateSnapshot(name)
	return err
}

func (i cephImage) SnapTime(id uint64) (time.Time, error) {
	ts, err := i.img.GetSnapTimestamp(id)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(ts.Sec, ts.Nsec).UTC(), nil
}

func (i cephImage) InSnapTrash(id uint64) (bool, error) {
	ns, err := i.img.GetSnapNamespaceType(id)
	return ns == librbd.SnapNamespaceTypeTrash, err
}

func (i cephImage) Children(snap string) ([]librbd.ImageSpec, error) {
	if err := i.img.SetSnapshot(snap); err != nil {
		return nil, err
	}
	defer i.img.SetSnapshot(librbd.NoSnapshot)
	return i.img.ListChildrenAttributes()
}

func (i cephImage) Lockers() ([]librbd.Locker, error) {
	_, lockers, err := i.img.ListLockers()
	return lockers, err
}
