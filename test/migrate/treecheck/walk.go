package treecheck

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Entry is what the walker records of one path.
type Entry struct {
	Type  uint32 // S_IFMT bits
	Mode  uint32 // permission bits with setuid, setgid, sticky
	UID   uint32
	GID   uint32
	Size  int64
	Mtime string // seconds.nanoseconds
	Atime string // not for directories and symlinks: listing and readlink move theirs
	Rdev  string // major:minor
	Link  string
	// Xattrs by name; CephFS's own ceph.* names are the storage's, not the tree's.
	Xattrs map[string]string
	SHA256 string
	// LinkGroup names the first path (sorted) that shares this entry's inode.
	LinkGroup string
	ino       uint64
	// Allocated is how many bytes the storage allocated (st_blocks).
	Allocated int64
}

// Manifest is a walked tree by relative path ("." for the root).
type Manifest map[string]*Entry

// Walk records every entry below root. It stats everything before reading any content,
// because reading moves access times.
func Walk(root string) (Manifest, error) {
	m := Manifest{}
	var order []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e, err := statEntry(p)
		if err != nil {
			return err
		}
		m[rel] = e
		order = append(order, rel)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(order)
	groups := map[uint64]string{}
	for _, rel := range order {
		e := m[rel]
		if e.Type != unix.S_IFDIR {
			if first, ok := groups[e.ino]; ok {
				e.LinkGroup = first
			} else {
				groups[e.ino] = rel
			}
		}
	}
	return m, readAll(root, order, m)
}

// readers is how many entries Walk reads at once: on a FUSE or NFS mount each read waits on
// the storage far longer than it computes.
const readers = 8

// readAll reads the symlink targets, xattrs and content of every entry, in parallel.
func readAll(root string, order []string, m Manifest) error {
	paths := make(chan string)
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rel := range paths {
				if err := readEntry(filepath.Join(root, rel), m[rel]); err != nil {
					errs <- err
					for range paths { // drain: the feeder stops at the first error
					}
					return
				}
			}
		}()
	}
	for _, rel := range order {
		if len(errs) > 0 {
			break
		}
		paths <- rel
	}
	close(paths)
	wg.Wait()
	close(errs)
	return <-errs
}

func statEntry(p string) (*Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, err
	}
	e := &Entry{Type: st.Mode & unix.S_IFMT, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Mtime: fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec), ino: st.Ino, Allocated: st.Blocks * 512}
	switch e.Type {
	case unix.S_IFREG, unix.S_IFLNK:
		e.Size = st.Size
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Rdev = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if e.Type != unix.S_IFDIR && e.Type != unix.S_IFLNK {
		e.Atime = fmt.Sprintf("%d.%09d", st.Atim.Sec, st.Atim.Nsec)
	}
	return e, nil
}

func readEntry(p string, e *Entry) error {
	var err error
	if e.Type == unix.S_IFLNK {
		if e.Link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	if e.Xattrs, err = xattrs(p); err != nil {
		return err
	}
	if e.Type == unix.S_IFREG {
		e.SHA256, err = digest(p)
	}
	return err
}

func xattrs(p string) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return nil, nil
		}
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "ceph.") {
			continue
		}
		val := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		out[name] = hex.EncodeToString(val[:vn])
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// digest reads without moving the atime (O_NOATIME: we are root). O_CLOEXEC: a process
// started meanwhile (a FUSE daemon staging another volume) must not keep the mount busy.
func digest(p string) (string, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOATIME|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Compare says what Diff leaves out.
type Compare struct {
	// NoXattrs: the source was read over NFSv3, which carries none.
	NoXattrs bool
	// NoAtimes: the source was read over NFS after the manifest was taken, and the server
	// moved the atimes of what was read (no NFS client can prevent that).
	NoAtimes bool
	// Microseconds: the target keeps times to the microsecond (written over NFS by libnfs).
	Microseconds bool
	// NoSymlinkTimes: the target's server ignores times set on a symlink (nfs-ganesha,
	// https://github.com/nfs-ganesha/nfs-ganesha/issues/983).
	NoSymlinkTimes bool
}

// Diff lists every way b differs from a (all of it: the zero Compare).
func Diff(a, b Manifest, c Compare) []string {
	var out []string
	for p, ea := range a {
		eb, ok := b[p]
		if !ok {
			out = append(out, fmt.Sprintf("%q: missing", p))
			continue
		}
		ea, eb = c.strip(ea), c.strip(eb)
		if d := entryDiff(ea, eb); d != "" {
			out = append(out, fmt.Sprintf("%q: %s", p, d))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out = append(out, fmt.Sprintf("%q: extra", p))
		}
	}
	sort.Strings(out)
	return out
}

func (c Compare) strip(e *Entry) *Entry {
	s := *e
	if c.NoXattrs {
		s.Xattrs = nil
	}
	if c.NoAtimes {
		s.Atime = ""
	}
	if c.Microseconds {
		s.Mtime, s.Atime = micro(s.Mtime), micro(s.Atime)
	}
	if c.NoSymlinkTimes && s.Type == unix.S_IFLNK {
		s.Mtime = ""
	}
	return &s
}

// micro drops the nanoseconds of a "seconds.nanoseconds" time.
func micro(t string) string {
	if len(t) < 3 {
		return t
	}
	return t[:len(t)-3] + "000"
}

func entryDiff(a, b *Entry) string {
	var d []string
	cmp := func(what string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			d = append(d, fmt.Sprintf("%s %v != %v", what, x, y))
		}
	}
	cmp("type", a.Type, b.Type)
	if a.Type != unix.S_IFLNK {
		cmp("mode", fmt.Sprintf("%04o", a.Mode), fmt.Sprintf("%04o", b.Mode))
	}
	cmp("owner", fmt.Sprint(a.UID, ":", a.GID), fmt.Sprint(b.UID, ":", b.GID))
	cmp("size", a.Size, b.Size)
	cmp("mtime", a.Mtime, b.Mtime)
	cmp("atime", a.Atime, b.Atime)
	cmp("rdev", a.Rdev, b.Rdev)
	cmp("link", a.Link, b.Link)
	cmp("content", a.SHA256, b.SHA256)
	cmp("hard links", a.LinkGroup, b.LinkGroup)
	cmp("xattrs", sortedMap(a.Xattrs), sortedMap(b.Xattrs))
	return strings.Join(d, "; ")
}

func sortedMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s,", k, m[k])
	}
	return b.String()
}
