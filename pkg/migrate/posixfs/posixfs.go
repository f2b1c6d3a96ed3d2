// Package posixfs is migrate.FS on a mounted path: a staged RBD volume's filesystem, a
// ceph-fuse or NFS mount, any local directory.
package posixfs

import (
	"errors"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/migrate"
)

// FS is a directory tree below Root.
type FS struct {
	root string
	fd   int
	// direct makes every read come from the storage, not the page cache (O_DIRECT): the
	// verification's read-back.
	direct bool
	limits migrate.Limits
}

// Option changes how Open behaves.
type Option func(*FS)

// DropCache makes reads bypass the page cache (O_DIRECT where the filesystem allows it):
// the verification reads back what the storage holds, not what this host just wrote.
func DropCache() Option { return func(f *FS) { f.direct = true } }

// Open serves the tree below root, which must be a directory.
func Open(root string, opts ...Option) (*FS, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &migrate.PathError{Op: "open", Path: root, Err: err}
	}
	f := &FS{root: root, fd: fd}
	for _, o := range opts {
		o(f)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &migrate.PathError{Op: "statfs", Path: root, Err: err}
	}
	f.limits = limitsOf(&st, len(root))
	return f, nil
}

// Filesystem magic numbers (statfs(2)).
const (
	magicExt4  = 0xef53
	magicXFS   = 0x58465342
	magicTmpfs = 0x01021994
	magicFuse  = 0x65735546
	magicCeph  = 0x00c36400
	magicNFS   = 0x6969
)

// Ext4Limits is what a fresh ext4 (an RBD volume's default filesystem) can hold.
func Ext4Limits() migrate.Limits {
	return limitsOf(&unix.Statfs_t{Type: magicExt4, Namelen: 255, Bsize: 4096}, 64)
}

// limitsOf describes what the mounted filesystem can hold, by its kind.
func limitsOf(st *unix.Statfs_t, rootLen int) migrate.Limits {
	l := migrate.PosixLimits("local")
	l.NameMax = int(st.Namelen)
	l.PathMax = unix.PathMax - 2 - rootLen
	switch st.Type {
	case magicExt4:
		// ext4 with 256-byte inodes keeps times from 1901 to 2446; xattrs of one entry
		// share one block (without the ea_inode feature).
		l.Name, l.MinTime, l.MaxTime = "ext4", -1<<31, 1<<34-1<<31-1
		l.Reserved = []string{"lost+found"}
		l.XattrValueMax, l.XattrTotalMax = int(st.Bsize)-128, int(st.Bsize)-128
	case magicXFS:
		// bigtime (the mkfs default since xfsprogs 5.15): 1901 to 2486.
		l.Name, l.MinTime, l.MaxTime = "xfs", -1<<31, 16299260424
	case magicTmpfs:
		l.Name = "tmpfs"
	case magicCeph:
		l.Name, l.MinTime, l.MaxTime = "cephfs (kernel)", 0, 1<<32-1
	case magicFuse:
		l.Name = "fuse"
	case magicNFS:
		l.Name = "nfs"
	}
	return l
}

func (f *FS) abs(p string) string {
	if p == "" {
		return f.root
	}
	return f.root + "/" + p
}

func perr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return &migrate.PathError{Op: op, Path: p, Err: err}
}

// AttrOf converts a stat result.
func AttrOf(st *unix.Stat_t) migrate.Attr {
	a := migrate.Attr{Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Size: st.Size, Nlink: uint32(st.Nlink),
		Ino: st.Ino, Rdev: st.Rdev, Blocks: st.Blocks,
		Atime: migrate.Timespec{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec},
		Mtime: migrate.Timespec{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
		Ctime: migrate.Timespec{Sec: st.Ctim.Sec, Nsec: st.Ctim.Nsec}}
	a.Type = migrate.TypeOfMode(st.Mode)
	return a
}

func (f *FS) Lstat(p string) (migrate.Attr, error) {
	var st unix.Stat_t
	if err := unix.Lstat(f.abs(p), &st); err != nil {
		return migrate.Attr{}, perr("lstat", p, err)
	}
	return AttrOf(&st), nil
}

func (f *FS) ReadDir(p string) ([]migrate.Entry, error) {
	d, err := os.Open(f.abs(p))
	if err != nil {
		return nil, perr("readdir", p, unwrap(err))
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, perr("readdir", p, unwrap(err))
	}
	out := make([]migrate.Entry, 0, len(names))
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since listed
			}
			return nil, perr("lstat", migrate.Join(p, n), err)
		}
		out = append(out, migrate.Entry{Name: n, Attr: AttrOf(&st)})
	}
	return out, nil
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (f *FS) Readlink(p string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlink(f.abs(p), buf)
		if err != nil {
			return "", perr("readlink", p, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func (f *FS) Xattrs(p string) (map[string][]byte, error) {
	path := f.abs(p)
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return map[string][]byte{}, perr("listxattr", p, err)
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(path, buf); err != nil {
		return nil, perr("listxattr", p, err)
	}
	out := map[string][]byte{}
	for _, name := range splitNames(buf[:size]) {
		v, err := lgetxattr(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, perr("getxattr "+name, p, err)
		}
		out[name] = v
	}
	return out, nil
}

func lgetxattr(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func splitNames(b []byte) []string {
	var out []string
	for start := 0; start < len(b); {
		end := start
		for end < len(b) && b[end] != 0 {
			end++
		}
		if end > start {
			out = append(out, string(b[start:end]))
		}
		start = end + 1
	}
	return out
}

func (f *FS) SetXattr(p, name string, value []byte) error {
	return perr("setxattr "+name, p, unix.Lsetxattr(f.abs(p), name, value, 0))
}

func (f *FS) RemoveXattr(p, name string) error {
	return perr("removexattr "+name, p, unix.Lremovexattr(f.abs(p), name))
}

func (f *FS) Mkdir(p string, perm uint32) error { return perr("mkdir", p, unix.Mkdir(f.abs(p), perm)) }

func (f *FS) Symlink(target, p string) error {
	return perr("symlink", p, unix.Symlink(target, f.abs(p)))
}

func (f *FS) Link(existing, p string) error {
	return perr("link", p, unix.Linkat(unix.AT_FDCWD, f.abs(existing), unix.AT_FDCWD, f.abs(p), 0))
}

func (f *FS) Mknod(p string, typ migrate.FileType, perm uint32, rdev uint64) error {
	mode, ok := typ.NodeMode()
	if !ok {
		return perr("mknod", p, unix.EINVAL)
	}
	return perr("mknod", p, unix.Mknod(f.abs(p), mode|perm&0o7777, int(rdev)))
}

func (f *FS) SetAttr(p string, typ migrate.FileType, o migrate.Owner) error {
	path := f.abs(p)
	if err := unix.Lchown(path, int(o.UID), int(o.GID)); err != nil {
		return perr("chown", p, err)
	}
	if typ != migrate.TypeSymlink {
		if err := unix.Chmod(path, o.Perm&0o7777); err != nil {
			return perr("chmod", p, err)
		}
	}
	ts := []unix.Timespec{{Sec: o.Atime.Sec, Nsec: o.Atime.Nsec}, {Sec: o.Mtime.Sec, Nsec: o.Mtime.Nsec}}
	return perr("utimes", p, unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW))
}

func (f *FS) Remove(p string) error {
	err := unix.Unlink(f.abs(p))
	if errors.Is(err, unix.EISDIR) {
		err = unix.Rmdir(f.abs(p))
	}
	return perr("remove", p, err)
}

func (f *FS) Rename(from, to string) error {
	return perr("rename", to, unix.Rename(f.abs(from), f.abs(to)))
}

func (f *FS) Sync() error            { return perr("syncfs", "", unix.Syncfs(f.fd)) }
func (f *FS) Limits() migrate.Limits { return f.limits }
func (f *FS) Close() error           { return unix.Close(f.fd) }

// file is an open regular file.
type file struct {
	fd     int
	size   int64
	path   string
	direct bool
}

func (f *FS) Open(p string) (migrate.Reader, error) {
	path := f.abs(p)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs ownership or CAP_FOWNER
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, perr("open", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, perr("stat", p, err)
	}
	h := &file{fd: fd, size: st.Size, path: p}
	if f.direct {
		unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_DIRECT)
			h.direct = err == nil
		}
	}
	return h, nil
}

// directAlign is what O_DIRECT asks of buffers, offsets and lengths.
const directAlign = 4096

func (h *file) ReadAt(b []byte, off int64) (int, error) {
	if h.direct {
		return h.readDirect(b, off)
	}
	n, err := unix.Pread(h.fd, b, off)
	if err != nil {
		return n, perr("read", h.path, err)
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// readDirect reads through an aligned buffer, as O_DIRECT requires.
func (h *file) readDirect(b []byte, off int64) (int, error) {
	start := off &^ (directAlign - 1)
	length := (off + int64(len(b)) - start + directAlign - 1) &^ (directAlign - 1)
	raw := make([]byte, length+directAlign)
	pad := int(directAlign - uintptr(unsafe.Pointer(&raw[0]))&(directAlign-1))
	buf := raw[pad%directAlign:][:length]
	n, err := unix.Pread(h.fd, buf, start)
	if err != nil {
		return 0, perr("read", h.path, err)
	}
	got := max(0, min(n-int(off-start), len(b)))
	copy(b, buf[off-start:int(off-start)+got])
	if got == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return got, nil
}

// Data finds the next data region with SEEK_DATA and SEEK_HOLE.
func (h *file) Data(off int64) (int64, int64, error) {
	start, err := unix.Seek(h.fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return 0, 0, io.EOF
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		return off, h.size, nil
	case err != nil:
		return 0, 0, perr("seek", h.path, err)
	}
	end, err := unix.Seek(h.fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, perr("seek", h.path, err)
	}
	return start, end, nil
}

func (h *file) Stat() (migrate.Attr, error) {
	var st unix.Stat_t
	if err := unix.Fstat(h.fd, &st); err != nil {
		return migrate.Attr{}, perr("stat", h.path, err)
	}
	return AttrOf(&st), nil
}

func (h *file) Close() error { return unix.Close(h.fd) }

func (f *FS) Create(p string, perm uint32) (migrate.Writer, error) {
	fd, err := unix.Open(f.abs(p), unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, perr("create", p, err)
	}
	return &wfile{fd: fd, path: p}, nil
}

type wfile struct {
	fd   int
	path string
}

func (w *wfile) WriteAt(b []byte, off int64) (int, error) {
	for done := 0; done < len(b); {
		n, err := unix.Pwrite(w.fd, b[done:], off+int64(done))
		if err != nil {
			return done, perr("write", w.path, err)
		}
		done += n
	}
	return len(b), nil
}

func (w *wfile) Truncate(size int64) error {
	return perr("truncate", w.path, unix.Ftruncate(w.fd, size))
}

func (w *wfile) Close() error { return perr("close", w.path, unix.Close(w.fd)) }

var _ migrate.FS = (*FS)(nil)
