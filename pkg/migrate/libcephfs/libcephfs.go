// Package libcephfs is migrate.FS on CephFS through libcephfs (go-ceph), without a mount:
// a volume's subvolume path is the FS root.
package libcephfs

import (
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
	"sync"
	"syscall"

	"github.com/ceph/go-ceph/cephfs"

	"github.com/shiphold/shiphold/pkg/migrate"
)

// Config says how to reach one directory of one CephFS.
type Config struct {
	Monitors []string
	User     string // cephx user without "client."
	Key      string
	FSName   string
	// Root is the directory that becomes the FS root (a subvolume's path).
	Root string
	// Dir is a directory below Root read as the FS root, where a mount cannot start: a
	// snapshot's .snap path (libcephfs mounts resolve no snapshot directory).
	Dir string
	// Session, when set, names this client's MDS session: a run killed with its session
	// still open has that session ended by the next Open with the same name.
	Session string
	// Options are further libcephfs settings (name: value).
	Options map[string]string
}

// FS is one libcephfs mount.
type FS struct {
	m       *cephfs.MountInfo
	cfg     Config
	objects objects
	// created maps the files this client created and has not read back to their inode
	// numbers, which OpenStored needs: looking a path up again costs an MDS request.
	created sync.Map
}

// Open mounts cfg.Root of the filesystem.
func Open(cfg Config) (*FS, error) {
	m, err := cephfs.CreateMountWithId(strings.TrimPrefix(cfg.User, "client."))
	if err != nil {
		return nil, fmt.Errorf("libcephfs: %w", err)
	}
	f := &FS{m: m, cfg: cfg}
	if err := f.mount(cfg); err != nil {
		m.Release()
		return nil, fmt.Errorf("mount CephFS %s:%s: %w", cfg.FSName, cfg.Root, err)
	}
	return f, nil
}

func (f *FS) mount(cfg Config) error {
	if err := checkRaw(f.m); err != nil {
		return err
	}
	opts := map[string]string{
		"mon_host": strings.Join(cfg.Monitors, ","), "key": cfg.Key,
		// POSIX ACLs are system.posix_acl_* xattrs the client must accept and enforce.
		"client_acl_type": "posix_acl",
		"log_to_stderr":   "false", "err_to_stderr": "false",
	}
	if cfg.FSName != "" {
		opts["client_fs"] = cfg.FSName
	}
	for k, v := range cfg.Options {
		opts[k] = v
	}
	for k, v := range opts {
		if err := f.m.SetConfigOption(k, v); err != nil {
			return fmt.Errorf("option %s: %w", k, err)
		}
	}
	if cfg.Session != "" {
		if err := f.m.Init(); err != nil {
			return err
		}
		if err := reclaim(f.m, cfg.Session); err != nil {
			return err
		}
	}
	root := cfg.Root
	if root == "" {
		root = "/"
	}
	if err := f.m.MountWithRoot(root); err != nil {
		return err
	}
	return checkRaw(f.m)
}

// errno turns a libcephfs return code (negative errno) into a syscall.Errno.
func errno(code int) error {
	if code < 0 {
		code = -code
	}
	return syscall.Errno(code)
}

// cerr converts go-ceph's error to an errno-wrapping PathError, so callers can use
// errors.Is with fs.ErrNotExist and the like.
func cerr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var coded interface{ ErrorCode() int }
	if errors.As(err, &coded) {
		err = errno(coded.ErrorCode())
	}
	return &migrate.PathError{Op: op, Path: p, Err: err}
}

// rel makes a path libcephfs resolves against the mount root, or below it against Dir.
func (f *FS) rel(p string) string {
	return path.Join("/", f.cfg.Dir, p)
}

// CephFS stores a device number as the kernel holds it (major<<20 | minor), which is what
// the kernel client and ceph-fuse write and read; Attr.Rdev is glibc's encoding.
func cephDev(rdev uint64) uint64 {
	return uint64(migrate.DevMajor(rdev))<<20 | uint64(migrate.DevMinor(rdev))
}

func userDev(d uint64) uint64 { return migrate.Mkdev(uint32(d>>20), uint32(d&0xfffff)) }

func attrOf(s *cephfs.CephStatx) migrate.Attr {
	a := migrate.Attr{Perm: uint32(s.Mode) & 0o7777, UID: s.Uid, GID: s.Gid, Size: int64(s.Size), Nlink: s.Nlink,
		Ino: uint64(s.Inode), Rdev: userDev(s.Rdev), Blocks: int64(s.Blocks),
		Atime: migrate.Timespec{Sec: s.Atime.Sec, Nsec: s.Atime.Nsec},
		Mtime: migrate.Timespec{Sec: s.Mtime.Sec, Nsec: s.Mtime.Nsec},
		Ctime: migrate.Timespec{Sec: s.Ctime.Sec, Nsec: s.Ctime.Nsec}}
	a.Type = migrate.TypeOfMode(uint32(s.Mode))
	return a
}

func (f *FS) Lstat(p string) (migrate.Attr, error) {
	s, err := f.m.Statx(f.rel(p), cephfs.StatxBasicStats, cephfs.AtSymlinkNofollow)
	if err != nil {
		return migrate.Attr{}, cerr("lstat", p, err)
	}
	return attrOf(s), nil
}

func (f *FS) ReadDir(p string) ([]migrate.Entry, error) {
	d, err := f.m.OpenDir(f.rel(p))
	if err != nil {
		return nil, cerr("readdir", p, err)
	}
	defer d.Close()
	var out []migrate.Entry
	for {
		e, err := d.ReadDirPlus(cephfs.StatxBasicStats, cephfs.AtSymlinkNofollow)
		if err != nil {
			return nil, cerr("readdir", p, err)
		}
		if e == nil {
			return out, nil
		}
		if n := e.Name(); n != "." && n != ".." {
			out = append(out, migrate.Entry{Name: n, Attr: attrOf(e.Statx())})
		}
	}
}

func (f *FS) Readlink(p string) (string, error) {
	l, err := f.m.Readlink(f.rel(p))
	return l, cerr("readlink", p, err)
}

func (f *FS) Xattrs(p string) (map[string][]byte, error) {
	names, err := f.m.LlistXattr(f.rel(p))
	if err != nil {
		return nil, cerr("listxattr", p, err)
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		if !migrate.Carried(n) {
			continue
		}
		v, err := f.m.LgetXattr(f.rel(p), n)
		if errors.Is(cerr("", "", err), syscall.ENODATA) {
			continue
		}
		if err != nil {
			return nil, cerr("getxattr "+n, p, err)
		}
		out[n] = v
	}
	return out, nil
}

func (f *FS) SetXattr(p, name string, value []byte) error {
	return cerr("setxattr "+name, p, f.m.LsetXattr(f.rel(p), name, value, cephfs.XattrDefault))
}

func (f *FS) RemoveXattr(p, name string) error {
	return cerr("removexattr "+name, p, f.m.LremoveXattr(f.rel(p), name))
}

func (f *FS) Mkdir(p string, perm uint32) error {
	return cerr("mkdir", p, f.m.MakeDir(f.rel(p), perm))
}

func (f *FS) Symlink(target, p string) error {
	return cerr("symlink", p, f.m.Symlink(target, f.rel(p)))
}

func (f *FS) Link(existing, p string) error {
	return cerr("link", p, f.m.Link(f.rel(existing), f.rel(p)))
}

func (f *FS) Mknod(p string, typ migrate.FileType, perm uint32, rdev uint64) error {
	mode, ok := typ.NodeMode()
	if !ok {
		return cerr("mknod", p, syscall.EINVAL)
	}
	return cerr("mknod", p, mknod(f.m, f.rel(p), mode|perm&0o7777, cephDev(rdev)))
}

// SetAttr sets owner, mode and times in one MDS request, without following a symlink.
func (f *FS) SetAttr(p string, typ migrate.FileType, o migrate.Owner) error {
	return cerr("setattr", p, setattrx(f.m, f.rel(p), o.UID, o.GID, o.Perm&0o7777, typ != migrate.TypeSymlink,
		o.Atime.Sec, o.Atime.Nsec, o.Mtime.Sec, o.Mtime.Nsec))
}

func (f *FS) Remove(p string) error {
	err := cerr("remove", p, f.m.Unlink(f.rel(p)))
	if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EPERM) {
		err = cerr("remove", p, f.m.RemoveDir(f.rel(p)))
	}
	return err
}

func (f *FS) Rename(from, to string) error {
	return cerr("rename", to, f.m.Rename(f.rel(from), f.rel(to)))
}

// Sync flushes every file's data and metadata this client holds dirty.
func (f *FS) Sync() error { return cerr("syncfs", "", f.m.SyncFs()) }

// Limits: CephFS keeps times as unsigned 32-bit seconds, and an inode's xattrs within
// mds_max_xattr_pairs_size (64 KiB by default); the MDS stores a device number in 32 bits.
func (f *FS) Limits() migrate.Limits { return Limits() }

// Limits is what CephFS can represent.
func Limits() migrate.Limits {
	return migrate.Limits{Name: "cephfs", NameMax: 255, MinTime: 0, MaxTime: math.MaxUint32,
		Xattrs: true, XattrValueMax: 64 << 10, XattrTotalMax: 64 << 10, DevMajorMax: 0xfff, DevMinorMax: 0xfffff, Sockets: true}
}

// Close unmounts and releases the client.
func (f *FS) Close() error {
	f.objects.close()
	err := f.m.Unmount()
	if rerr := f.m.Release(); err == nil {
		err = rerr
	}
	return err
}

type file struct {
	f    *cephfs.File
	path string
}

func (f *FS) Open(p string) (migrate.Reader, error) {
	h, err := f.m.Open(f.rel(p), syscall.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, cerr("open", p, err)
	}
	return &file{f: h, path: p}, nil
}

func (h *file) ReadAt(b []byte, off int64) (int, error) {
	n, err := h.f.ReadAt(b, off)
	if err == io.EOF {
		return n, io.EOF
	}
	return n, cerr("read", h.path, err)
}

// Data: libcephfs does not tell holes from data; a hole reads as zeros, which the engine
// recognises and leaves out.
func (h *file) Data(off int64) (int64, int64, error) { return off, math.MaxInt64, nil }

func (h *file) Stat() (migrate.Attr, error) {
	s, err := h.f.Fstatx(cephfs.StatxBasicStats, 0)
	if err != nil {
		return migrate.Attr{}, cerr("stat", h.path, err)
	}
	return attrOf(s), nil
}

func (h *file) Close() error { return cerr("close", h.path, h.f.Close()) }

func (f *FS) Create(p string, perm uint32) (migrate.Writer, error) {
	h, err := f.m.Open(f.rel(p), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return nil, cerr("create", p, err)
	}
	if s, err := h.Fstatx(cephfs.StatxIno, cephfs.AtStatxDontSync); err == nil {
		f.created.Store(p, uint64(s.Inode))
	} else {
		f.created.Delete(p)
	}
	return &wfile{f: h, path: p}, nil
}

type wfile struct {
	f    *cephfs.File
	path string
}

func (w *wfile) WriteAt(b []byte, off int64) (int, error) {
	for done := 0; done < len(b); {
		n, err := w.f.WriteAt(b[done:], off+int64(done))
		if err != nil {
			return done, cerr("write", w.path, err)
		}
		done += n
	}
	return len(b), nil
}

func (w *wfile) Truncate(size int64) error { return cerr("truncate", w.path, w.f.Truncate(size)) }
func (w *wfile) Close() error              { return cerr("close", w.path, w.f.Close()) }

var _ migrate.FS = (*FS)(nil)
