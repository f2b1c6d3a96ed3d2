// Package memfs is an in-memory migrate.FS for the engine's unit tests: inodes with hard
// links, holes at 4 KiB granularity, xattrs, special files, configurable limits, and a hook
// that fails any operation on demand (a storage error, or a "kill" at a chosen point).
package memfs

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/shiphold/shiphold/pkg/migrate"
)

// BlockSize is the allocation unit: a block never written is a hole.
const BlockSize = 4096

type inode struct {
	attr    migrate.Attr
	blocks  map[int64][]byte
	target  string
	xattrs  map[string][]byte
	entries map[string]*inode
}

// FS is an in-memory tree. The zero value is not usable; call New.
type FS struct {
	mu      sync.Mutex
	root    *inode
	nextIno uint64
	clock   int64
	limits  migrate.Limits
	// Fail, when set, is called before every operation; an error it returns is returned.
	Fail func(op, path string) error
	// Ops counts operations, for tests that fail "at a random point".
	Ops int
}

// New returns an empty tree whose root is a 0755 directory owned by root.
func New(l migrate.Limits) *FS {
	f := &FS{limits: l, nextIno: 1}
	f.root = f.newInode(migrate.TypeDir, 0o755)
	return f
}

func (f *FS) newInode(t migrate.FileType, perm uint32) *inode {
	f.nextIno++
	n := &inode{attr: migrate.Attr{Type: t, Perm: perm & 0o7777, Nlink: 1, Ino: f.nextIno}, xattrs: map[string][]byte{}}
	if t == migrate.TypeDir {
		n.entries = map[string]*inode{}
		n.attr.Nlink = 2
	}
	f.touch(n, true)
	n.attr.Atime = n.attr.Mtime
	return n
}

// touch advances the clock: changed content moves mtime and ctime, metadata only ctime.
func (f *FS) touch(n *inode, content bool) {
	f.clock++
	now := migrate.Timespec{Sec: 1_700_000_000 + f.clock/1000, Nsec: (f.clock % 1000) * 1000}
	n.attr.Ctime = now
	if content {
		n.attr.Mtime = now
	}
}

func (f *FS) enter(op, path string) error {
	f.Ops++
	if f.Fail != nil {
		if err := f.Fail(op, path); err != nil {
			return &migrate.PathError{Op: op, Path: path, Err: err}
		}
	}
	return nil
}

func perr(op, path string, errno syscall.Errno) error {
	return &migrate.PathError{Op: op, Path: path, Err: errno}
}

// lookup finds the inode at path without following symlinks.
func (f *FS) lookup(path string) (*inode, error) {
	n := f.root
	if path == "" {
		return n, nil
	}
	for _, name := range strings.Split(path, "/") {
		if n.attr.Type != migrate.TypeDir {
			return nil, syscall.ENOTDIR
		}
		c, ok := n.entries[name]
		if !ok {
			return nil, syscall.ENOENT
		}
		n = c
	}
	return n, nil
}

// parent finds the directory that holds path and the last name.
func (f *FS) parent(path string) (*inode, string, error) {
	if path == "" {
		return nil, "", syscall.EEXIST
	}
	d, err := f.lookup(migrate.Dir(path))
	if err != nil {
		return nil, "", err
	}
	if d.attr.Type != migrate.TypeDir {
		return nil, "", syscall.ENOTDIR
	}
	name := migrate.Base(path)
	if len(name) > f.limits.NameMax && f.limits.NameMax > 0 {
		return nil, "", syscall.ENAMETOOLONG
	}
	return d, name, nil
}

func (f *FS) Lstat(path string) (migrate.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("lstat", path); err != nil {
		return migrate.Attr{}, err
	}
	n, err := f.lookup(path)
	if err != nil {
		return migrate.Attr{}, &migrate.PathError{Op: "lstat", Path: path, Err: err}
	}
	return n.attr, nil
}

func (f *FS) ReadDir(path string) ([]migrate.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("readdir", path); err != nil {
		return nil, err
	}
	d, err := f.lookup(path)
	if err != nil {
		return nil, &migrate.PathError{Op: "readdir", Path: path, Err: err}
	}
	if d.attr.Type != migrate.TypeDir {
		return nil, perr("readdir", path, syscall.ENOTDIR)
	}
	out := make([]migrate.Entry, 0, len(d.entries))
	for name, c := range d.entries {
		out = append(out, migrate.Entry{Name: name, Attr: c.attr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *FS) Readlink(path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("readlink", path); err != nil {
		return "", err
	}
	n, err := f.lookup(path)
	if err != nil {
		return "", &migrate.PathError{Op: "readlink", Path: path, Err: err}
	}
	if n.attr.Type != migrate.TypeSymlink {
		return "", perr("readlink", path, syscall.EINVAL)
	}
	return n.target, nil
}

func (f *FS) Xattrs(path string) (map[string][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("listxattr", path); err != nil {
		return nil, err
	}
	n, err := f.lookup(path)
	if err != nil {
		return nil, &migrate.PathError{Op: "listxattr", Path: path, Err: err}
	}
	out := make(map[string][]byte, len(n.xattrs))
	for k, v := range n.xattrs {
		out[k] = append([]byte(nil), v...)
	}
	return out, nil
}

func (f *FS) SetXattr(path, name string, value []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("setxattr", path); err != nil {
		return err
	}
	n, err := f.lookup(path)
	if err != nil {
		return &migrate.PathError{Op: "setxattr", Path: path, Err: err}
	}
	if !f.limits.Xattrs {
		return perr("setxattr", path, syscall.ENOTSUP)
	}
	if f.limits.XattrValueMax > 0 && len(value) > f.limits.XattrValueMax {
		return perr("setxattr", path, syscall.E2BIG)
	}
	n.xattrs[name] = append([]byte(nil), value...)
	f.touch(n, false)
	return nil
}

func (f *FS) RemoveXattr(path, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("removexattr", path); err != nil {
		return err
	}
	n, err := f.lookup(path)
	if err != nil {
		return &migrate.PathError{Op: "removexattr", Path: path, Err: err}
	}
	if _, ok := n.xattrs[name]; !ok {
		return perr("removexattr", path, syscall.ENODATA)
	}
	delete(n.xattrs, name)
	f.touch(n, false)
	return nil
}

// add links a new inode at path.
func (f *FS) add(op, path string, n *inode) error {
	d, name, err := f.parent(path)
	if err != nil {
		return &migrate.PathError{Op: op, Path: path, Err: err}
	}
	if _, ok := d.entries[name]; ok {
		return perr(op, path, syscall.EEXIST)
	}
	d.entries[name] = n
	if n.attr.Type == migrate.TypeDir {
		d.attr.Nlink++
	}
	f.touch(d, true)
	return nil
}

func (f *FS) Mkdir(path string, perm uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("mkdir", path); err != nil {
		return err
	}
	return f.add("mkdir", path, f.newInode(migrate.TypeDir, perm))
}

func (f *FS) Symlink(target, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("symlink", path); err != nil {
		return err
	}
	n := f.newInode(migrate.TypeSymlink, 0o777)
	n.target = target
	n.attr.Size = int64(len(target))
	return f.add("symlink", path, n)
}

func (f *FS) Link(existing, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("link", path); err != nil {
		return err
	}
	n, err := f.lookup(existing)
	if err != nil {
		return &migrate.PathError{Op: "link", Path: existing, Err: err}
	}
	if n.attr.Type == migrate.TypeDir {
		return perr("link", existing, syscall.EPERM)
	}
	if err := f.add("link", path, n); err != nil {
		return err
	}
	n.attr.Nlink++
	f.touch(n, false)
	return nil
}

func (f *FS) Mknod(path string, typ migrate.FileType, perm uint32, rdev uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("mknod", path); err != nil {
		return err
	}
	if !typ.Special() || (typ == migrate.TypeSocket && !f.limits.Sockets) {
		return perr("mknod", path, syscall.EINVAL)
	}
	if migrate.DevMajor(rdev) > f.limits.DevMajorMax || migrate.DevMinor(rdev) > f.limits.DevMinorMax {
		return perr("mknod", path, syscall.EOVERFLOW)
	}
	n := f.newInode(typ, perm)
	n.attr.Rdev = rdev
	return f.add("mknod", path, n)
}

func (f *FS) SetAttr(path string, typ migrate.FileType, o migrate.Owner) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("setattr", path); err != nil {
		return err
	}
	n, err := f.lookup(path)
	if err != nil {
		return &migrate.PathError{Op: "setattr", Path: path, Err: err}
	}
	for _, t := range []migrate.Timespec{o.Atime, o.Mtime} {
		if t.Sec < f.limits.MinTime || t.Sec > f.limits.MaxTime {
			return perr("setattr", path, syscall.EOVERFLOW)
		}
	}
	n.attr.UID, n.attr.GID = o.UID, o.GID
	if n.attr.Type != migrate.TypeSymlink {
		n.attr.Perm = o.Perm & 0o7777
	}
	f.touch(n, false)
	n.attr.Atime, n.attr.Mtime = o.Atime, o.Mtime
	return nil
}

func (f *FS) Remove(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("remove", path); err != nil {
		return err
	}
	d, name, err := f.parent(path)
	if err != nil {
		return &migrate.PathError{Op: "remove", Path: path, Err: err}
	}
	n, ok := d.entries[name]
	if !ok {
		return perr("remove", path, syscall.ENOENT)
	}
	if n.attr.Type == migrate.TypeDir {
		if len(n.entries) > 0 {
			return perr("remove", path, syscall.ENOTEMPTY)
		}
		d.attr.Nlink--
	} else {
		n.attr.Nlink--
		f.touch(n, false)
	}
	delete(d.entries, name)
	f.touch(d, true)
	return nil
}

func (f *FS) Rename(from, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("rename", to); err != nil {
		return err
	}
	sd, sname, err := f.parent(from)
	if err != nil {
		return &migrate.PathError{Op: "rename", Path: from, Err: err}
	}
	n, ok := sd.entries[sname]
	if !ok {
		return perr("rename", from, syscall.ENOENT)
	}
	dd, dname, err := f.parent(to)
	if err != nil {
		return &migrate.PathError{Op: "rename", Path: to, Err: err}
	}
	if old, ok := dd.entries[dname]; ok {
		if old.attr.Type == migrate.TypeDir && len(old.entries) > 0 {
			return perr("rename", to, syscall.ENOTEMPTY)
		}
		old.attr.Nlink--
	}
	delete(sd.entries, sname)
	dd.entries[dname] = n
	if n.attr.Type == migrate.TypeDir {
		sd.attr.Nlink--
		dd.attr.Nlink++
	}
	f.touch(sd, true)
	f.touch(dd, true)
	f.touch(n, false)
	return nil
}

func (f *FS) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enter("sync", "")
}

func (f *FS) Limits() migrate.Limits { return f.limits }
func (f *FS) Close() error           { return nil }

// file is an open regular file.
type file struct {
	f    *FS
	n    *inode
	path string
}

func (f *FS) Open(path string) (migrate.Reader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("open", path); err != nil {
		return nil, err
	}
	n, err := f.lookup(path)
	if err != nil {
		return nil, &migrate.PathError{Op: "open", Path: path, Err: err}
	}
	if n.attr.Type != migrate.TypeRegular {
		return nil, perr("open", path, syscall.EINVAL)
	}
	return &file{f: f, n: n, path: path}, nil
}

func (f *FS) Create(path string, perm uint32) (migrate.Writer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("create", path); err != nil {
		return nil, err
	}
	n, err := f.lookup(path)
	switch {
	case err == nil && n.attr.Type != migrate.TypeRegular:
		return nil, perr("create", path, syscall.EISDIR)
	case err == nil:
		n.blocks, n.attr.Size = nil, 0
		f.touch(n, true)
	default:
		n = f.newInode(migrate.TypeRegular, perm)
		if err := f.add("create", path, n); err != nil {
			return nil, err
		}
	}
	return &file{f: f, n: n, path: path}, nil
}

func (h *file) ReadAt(p []byte, off int64) (int, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if err := h.f.enter("read", h.path); err != nil {
		return 0, err
	}
	if off >= h.n.attr.Size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), h.n.attr.Size-off)
	for i := int64(0); i < n; {
		b, bo := (off+i)/BlockSize, (off+i)%BlockSize
		c := min(BlockSize-bo, n-i)
		if blk, ok := h.n.blocks[b]; ok {
			copy(p[i:i+c], blk[bo:bo+c])
		} else {
			clear(p[i : i+c])
		}
		i += c
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func (h *file) Data(off int64) (int64, int64, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	size := h.n.attr.Size
	var idx []int64
	for b := range h.n.blocks {
		if (b+1)*BlockSize > off && b*BlockSize < size {
			idx = append(idx, b)
		}
	}
	if len(idx) == 0 {
		return 0, 0, io.EOF
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	start, end := idx[0], idx[0]+1
	for _, b := range idx[1:] {
		if b != end {
			break
		}
		end++
	}
	return max(start*BlockSize, off), min(end*BlockSize, size), nil
}

func (h *file) WriteAt(p []byte, off int64) (int, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if err := h.f.enter("write", h.path); err != nil {
		return 0, err
	}
	if h.n.blocks == nil {
		h.n.blocks = map[int64][]byte{}
	}
	for i := int64(0); i < int64(len(p)); {
		b, bo := (off+i)/BlockSize, (off+i)%BlockSize
		c := min(BlockSize-bo, int64(len(p))-i)
		blk, ok := h.n.blocks[b]
		if !ok {
			blk = make([]byte, BlockSize)
			h.n.blocks[b] = blk
		}
		copy(blk[bo:bo+c], p[i:i+c])
		i += c
	}
	h.n.attr.Size = max(h.n.attr.Size, off+int64(len(p)))
	h.n.attr.Blocks = int64(len(h.n.blocks)) * BlockSize / 512
	h.f.touch(h.n, true)
	return len(p), nil
}

func (h *file) Truncate(size int64) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if err := h.f.enter("truncate", h.path); err != nil {
		return err
	}
	for b, blk := range h.n.blocks {
		switch {
		case b*BlockSize >= size:
			delete(h.n.blocks, b)
		case (b+1)*BlockSize > size:
			clear(blk[size-b*BlockSize:])
		}
	}
	h.n.attr.Size = size
	h.n.attr.Blocks = int64(len(h.n.blocks)) * BlockSize / 512
	h.f.touch(h.n, true)
	return nil
}

func (h *file) Stat() (migrate.Attr, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.n.attr, nil
}

func (h *file) Close() error { return nil }

// String describes the FS for test failures.
func (f *FS) String() string { return fmt.Sprintf("memfs(%s)", f.limits.Name) }
