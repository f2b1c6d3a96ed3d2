package libcephfs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/ceph/go-ceph/cephfs"
	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/migrate"
)

// objects reads file data from the RADOS objects CephFS keeps it in, for the verification:
// no MDS open and no capability taken from the writer, and no client cache in the way.
type objects struct {
	once   sync.Once
	conn   *rados.Conn
	ioctx  *rados.IOContext
	layout layout
	// off says why stored reads are not used (no layout, no access to the data pool).
	off error
}

// layout is a file's placement as ceph.file.layout reports it.
type layout struct {
	stripeUnit, stripeCount, objectSize int64
	pool, namespace                     string
}

// parseLayout reads "stripe_unit=4194304 stripe_count=1 object_size=4194304 pool=p
// pool_namespace=ns" (pool_namespace only when set).
func parseLayout(s string) (layout, error) {
	var l layout
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "stripe_unit":
			l.stripeUnit = n
		case "stripe_count":
			l.stripeCount = n
		case "object_size":
			l.objectSize = n
		case "pool":
			l.pool = v
		case "pool_namespace":
			l.namespace = v
		}
	}
	if l.stripeUnit <= 0 || l.objectSize <= 0 || l.pool == "" {
		return l, fmt.Errorf("file layout %q", s)
	}
	return l, nil
}

// open connects to the data pool of the file at p's layout. Every file this client creates
// has the same layout: it inherits its root's, and the engine sets no ceph.* attribute.
func (o *objects) open(f *FS, p string) error {
	v, err := f.m.LgetXattr(f.rel(p), "ceph.file.layout")
	if err != nil {
		return cerr("getxattr ceph.file.layout", p, err)
	}
	if o.layout, err = parseLayout(string(v)); err != nil {
		return err
	}
	if o.conn, err = rados.NewConnWithUser(strings.TrimPrefix(f.cfg.User, "client.")); err != nil {
		return err
	}
	for k, v := range map[string]string{"mon_host": strings.Join(f.cfg.Monitors, ","), "key": f.cfg.Key} {
		if err := o.conn.SetConfigOption(k, v); err != nil {
			return err
		}
	}
	if err := o.conn.Connect(); err != nil {
		return err
	}
	if o.ioctx, err = o.conn.OpenIOContext(o.layout.pool); err != nil {
		return err
	}
	o.ioctx.SetNamespace(o.layout.namespace)
	return nil
}

func (o *objects) close() {
	if o.ioctx != nil {
		o.ioctx.Destroy()
	}
	if o.conn != nil {
		o.conn.Shutdown()
	}
}

// OpenStored reads a file's data back from its RADOS object, after Sync: files within one
// stripe unit (all in object 0), found by the inode this client created them with (else
// looked up). Larger
// files, or a cluster whose data pool this user cannot read, are left to Open (ok false).
func (f *FS) OpenStored(p string, size int64) (migrate.Reader, bool, error) {
	f.objects.once.Do(func() {
		if f.objects.off = f.objects.open(f, p); f.objects.off != nil {
			f.objects.close()
		}
	})
	if f.objects.off != nil || size > f.objects.layout.stripeUnit {
		return nil, false, nil
	}
	ino, ok := f.created.LoadAndDelete(p)
	if !ok {
		s, err := f.m.Statx(f.rel(p), cephfs.StatxIno, cephfs.AtSymlinkNofollow|cephfs.AtStatxDontSync)
		if err != nil {
			return nil, false, cerr("lstat", p, err)
		}
		ino = uint64(s.Inode)
	}
	return &object{io: f.objects.ioctx, oid: fmt.Sprintf("%x.%08x", ino, 0), path: p}, true, nil
}

// object is the first RADOS object of a file; what lies past its end is a hole.
type object struct {
	io   *rados.IOContext
	oid  string
	path string
}

func (r *object) ReadAt(b []byte, off int64) (int, error) {
	n, err := r.io.Read(r.oid, b, uint64(off))
	if errors.Is(err, rados.ErrNotFound) {
		n, err = 0, nil
	}
	if err != nil {
		return 0, &migrate.PathError{Op: "read object " + r.oid, Path: r.path, Err: err}
	}
	clear(b[n:])
	return len(b), nil
}

func (r *object) Data(off int64) (int64, int64, error) { return off, math.MaxInt64, nil }

func (r *object) Stat() (migrate.Attr, error) {
	return migrate.Attr{}, errors.New("a RADOS object has no file attributes")
}

func (r *object) Close() error { return nil }

var _ migrate.StoredReader = (*FS)(nil)
