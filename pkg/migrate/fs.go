// Package migrate copies a volume's tree from one storage to another, faithfully (owners,
// modes, nanosecond times, links, holes, xattrs, ACLs, special files), verified by checksum,
// resumable from a journal and repeatable as an incremental final pass. Both sides are reached
// through FS, so either can be a mounted path, CephFS through libcephfs or NFSv3 in userspace.
package migrate

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"syscall"
)

// FileType is the kind of a directory entry.
type FileType uint8

// File types, as every storage here knows them.
const (
	TypeRegular FileType = iota + 1
	TypeDir
	TypeSymlink
	TypeFifo
	TypeChar
	TypeBlock
	TypeSocket
)

// modeBits are the S_IF* bits of each file type in a POSIX st_mode, as every storage here
// (the Linux kernel, libcephfs, NFSv3 through libnfs) encodes them.
var modeBits = map[FileType]uint32{
	TypeRegular: syscall.S_IFREG, TypeDir: syscall.S_IFDIR, TypeSymlink: syscall.S_IFLNK,
	TypeFifo: syscall.S_IFIFO, TypeChar: syscall.S_IFCHR, TypeBlock: syscall.S_IFBLK, TypeSocket: syscall.S_IFSOCK,
}

// TypeOfMode is the file type a POSIX st_mode names, 0 for none of these.
func TypeOfMode(mode uint32) FileType {
	for t, bits := range modeBits {
		if mode&syscall.S_IFMT == bits {
			return t
		}
	}
	return 0
}

// NodeMode is the S_IF* bits mknod takes to make a file of type t: only fifos, devices and
// sockets are made by mknod (false for the others).
func (t FileType) NodeMode() (uint32, bool) {
	switch t {
	case TypeFifo, TypeChar, TypeBlock, TypeSocket:
		return modeBits[t], true
	}
	return 0, false
}

var typeNames = map[FileType]string{
	TypeRegular: "file", TypeDir: "directory", TypeSymlink: "symlink", TypeFifo: "fifo",
	TypeChar: "char device", TypeBlock: "block device", TypeSocket: "socket",
}

func (t FileType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Special reports whether t is made by Mknod.
func (t FileType) Special() bool {
	return t == TypeFifo || t == TypeChar || t == TypeBlock || t == TypeSocket
}

// Timespec is a time to the nanosecond as the storage holds it (seconds may be negative).
type Timespec struct {
	Sec  int64
	Nsec int64
}

func (t Timespec) String() string { return fmt.Sprintf("%d.%09d", t.Sec, t.Nsec) }

// Attr is what lstat reports about one entry.
type Attr struct {
	Type  FileType
	Perm  uint32 // permission bits with setuid, setgid and sticky (07777)
	UID   uint32
	GID   uint32
	Size  int64
	Nlink uint32
	Ino   uint64
	Rdev  uint64
	Atime Timespec
	Mtime Timespec
	Ctime Timespec
	// Blocks counts allocated 512-byte blocks, where the storage reports real allocation.
	Blocks int64
}

// Owner is what SetAttr applies, all at once and without following a symlink.
type Owner struct {
	UID, GID uint32
	Perm     uint32 // ignored for symlinks
	Atime    Timespec
	Mtime    Timespec
}

// Entry is one name in a directory with its lstat attributes.
type Entry struct {
	Name string
	Attr Attr
}

// Reader reads one regular file by offset.
type Reader interface {
	ReadAt(p []byte, off int64) (int, error)
	// Data returns the data region [start, end) at or after off; io.EOF when only a hole
	// (or nothing) follows. Storage that cannot tell holes returns [off, math.MaxInt64):
	// the caller reads no further than the size it knows.
	Data(off int64) (start, end int64, err error)
	// Stat returns the open file's attributes now (the engine's check that the file did not
	// change while it was read).
	Stat() (Attr, error)
	Close() error
}

// Writer writes one regular file by offset; what is never written stays a hole.
type Writer interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Close() error
}

// FS is one side of a migration. Paths are relative to the volume's root, '/'-separated,
// "" for the root itself; names may hold any byte but '/' and NUL. Nothing follows symlinks.
type FS interface {
	Lstat(path string) (Attr, error)
	// ReadDir lists a directory without "." and "..", each entry with its lstat attributes.
	ReadDir(path string) ([]Entry, error)
	Readlink(path string) (string, error)
	// Xattrs returns every extended attribute of the entry (POSIX ACLs included).
	Xattrs(path string) (map[string][]byte, error)
	Open(path string) (Reader, error)
	// Create opens a regular file for writing, truncated, creating it with perm if absent.
	Create(path string, perm uint32) (Writer, error)
	Mkdir(path string, perm uint32) error
	Symlink(target, path string) error
	Link(existing, path string) error
	Mknod(path string, typ FileType, perm uint32, rdev uint64) error
	SetAttr(path string, typ FileType, o Owner) error
	SetXattr(path, name string, value []byte) error
	RemoveXattr(path, name string) error
	// Remove removes a non-directory or an empty directory.
	Remove(path string) error
	Rename(from, to string) error
	// Sync makes everything written so far durable on the storage.
	Sync() error
	Limits() Limits
	Close() error
}

// StoredReader is a target that reads a file's data back from where its storage keeps it
// (CephFS: the RADOS objects), past every client cache, once Sync has returned. ok is false
// for a file it does not read that way: Open on the verification reader reads it.
type StoredReader interface {
	OpenStored(path string, size int64) (r Reader, ok bool, err error)
}

// Limits is what a storage can represent; the pre-flight scan checks the source against
// the target's.
type Limits struct {
	Name string // for reports: "cephfs", "ext4", "nfs3", ...
	// NameMax is the longest name in bytes; PathMax the longest relative path (0: none).
	NameMax int
	PathMax int
	// MinTime and MaxTime bound representable seconds (CephFS: unsigned 32-bit);
	// TimeGranularity is the finest step in nanoseconds (0 or 1: nanoseconds).
	MinTime, MaxTime int64
	TimeGranularity  int64
	// Xattrs says whether extended attributes can be stored at all; XattrValueMax bounds
	// one value, XattrTotalMax the names and values of one entry together (0: no bound).
	Xattrs        bool
	XattrValueMax int
	XattrTotalMax int
	// DevMajorMax and DevMinorMax bound the device numbers of device nodes (CephFS keeps
	// them as the kernel does, in 12 and 20 bits).
	DevMajorMax, DevMinorMax uint32
	// Sockets says whether a socket entry can be created.
	Sockets bool
	// ReadMovesAtime says that reading a file moves its atime on the storage (an NFS server
	// does, whatever the client asks): the verification sets the atime back after it reads.
	ReadMovesAtime bool
	// Reserved names entries of the root that belong to the storage (ext4's lost+found):
	// unless the source has them too, they are neither removed nor counted as differences.
	Reserved []string
}

// reserved reports whether a target path is the storage's own.
func (l Limits) reserved(path string) bool {
	for _, r := range l.Reserved {
		if path == r || strings.HasPrefix(path, r+"/") {
			return true
		}
	}
	return false
}

// PosixLimits suits a Linux local filesystem with 64-bit times.
func PosixLimits(name string) Limits {
	return Limits{Name: name, NameMax: 255, PathMax: 4000, MinTime: math.MinInt64 / 2, MaxTime: math.MaxInt64 / 2,
		Xattrs: true, XattrValueMax: 64 << 10, DevMajorMax: math.MaxUint32, DevMinorMax: math.MaxUint32, Sockets: true}
}

// DevMajor and DevMinor split a device number as glibc's major(3) and minor(3) do; Attr.Rdev
// holds it in that (userspace) encoding on every FS.
func DevMajor(rdev uint64) uint32 { return uint32((rdev>>8)&0xfff | (rdev>>32)&^0xfff) }
func DevMinor(rdev uint64) uint32 { return uint32(rdev&0xff | (rdev>>12)&^0xff) }

// Mkdev builds a device number as glibc's makedev(3) does.
func Mkdev(major, minor uint32) uint64 {
	ma, mi := uint64(major), uint64(minor)
	return mi&0xff | (ma&0xfff)<<8 | (mi&^0xff)<<12 | (ma&^0xfff)<<32
}

// ErrNotExist is returned (wrapped) when an entry is absent; ErrExist when it is present.
var (
	ErrNotExist = fs.ErrNotExist
	ErrExist    = fs.ErrExist
)

// Join joins relative paths, treating "" as the root.
func Join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Dir returns the parent of a relative path ("" for top-level entries).
func Dir(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Base returns the last name of a relative path.
func Base(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// Depth counts the names in a relative path.
func Depth(path string) int {
	if path == "" {
		return 0
	}
	return strings.Count(path, "/") + 1
}

// IsNotExist reports whether err says an entry is absent.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// IsNoAttr reports whether err says an extended attribute is absent.
func IsNoAttr(err error) bool { return errors.Is(err, syscall.ENODATA) || IsNotExist(err) }

// IsExist reports whether err says an entry is present.
func IsExist(err error) bool { return errors.Is(err, fs.ErrExist) }

// PathError names the operation and the path of a storage error.
type PathError struct {
	Op   string
	Path string
	Err  error
}

func (e *PathError) Error() string { return fmt.Sprintf("%s %q: %v", e.Op, e.Path, e.Err) }
func (e *PathError) Unwrap() error { return e.Err }
