// Package treecheck prepares the tree a migration test copies, and proves two trees equal
// with its own walker: plain syscalls on mounted paths, sharing no code with pkg/migrate.
package treecheck

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Spec says what Build writes.
type Spec struct {
	// SmallFiles are spread over Dirs directories, two levels deep.
	SmallFiles int
	Dirs       int
	// LargeFiles are written with random content.
	LargeFiles []int64
	// SparseSize is the apparent size of a file holding three small pieces of data.
	SparseSize int64
	Seed       int64
}

// Full is the tree the migration tests use: every kind of entry, 1,000 small files in 100
// directories (make bench-migrate copies 10k), large files across the engine's 1 and 4 MiB
// chunks and CephFS's 4 MiB objects, and a sparse file of 256 MiB holding three pieces.
var Full = Spec{SmallFiles: 1000, Dirs: 100, LargeFiles: []int64{24 << 20, 9<<20 + 12345}, SparseSize: 256 << 20, Seed: 1}

// Odd names: unicode, a newline, the longest a name can be, leading dash and space.
var OddNames = []string{"ünïcødé-файл-文件 ✓", "new\nline", strings.Repeat("L", 255), "-dash", " lead space", "tab\tname", "back\\slash", "quote\"'"}

// Build writes the tree below root (an empty directory), as root.
func Build(root string, s Spec) error {
	b := &builder{root: root, rng: rand.New(rand.NewSource(s.Seed))}
	if s.SmallFiles < 50 || s.Dirs < 10 || len(s.LargeFiles) == 0 {
		return fmt.Errorf("a tree needs at least 50 small files, 10 directories and a large file")
	}
	steps := []func(Spec){b.small, b.large, b.sparse, b.odd, b.links, b.specials, b.metadata}
	for _, step := range steps {
		step(s)
		if b.err != nil {
			return b.err
		}
	}
	return nil
}

type builder struct {
	root string
	rng  *rand.Rand
	err  error
}

func (b *builder) p(rel string) string { return filepath.Join(b.root, rel) }

func (b *builder) check(err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
}

func (b *builder) write(rel string, data []byte, perm os.FileMode) {
	b.check(os.WriteFile(b.p(rel), data, perm))
}

func (b *builder) small(s Spec) {
	for d := 0; d < s.Dirs; d++ {
		b.check(os.MkdirAll(b.p(fmt.Sprintf("site/d%02d/e%02d", d/10, d%10)), 0o755))
	}
	for i := 0; i < s.SmallFiles; i++ {
		data := make([]byte, b.rng.Intn(8192)+1)
		b.rng.Read(data)
		b.write(s.SmallFile(i), data, 0o644)
	}
}

// SmallFile is the path of the i-th small file: consecutive files share a directory.
func (s Spec) SmallFile(i int) string {
	per := (s.SmallFiles + max(s.Dirs, 1) - 1) / max(s.Dirs, 1)
	d := i / per
	return fmt.Sprintf("site/d%02d/e%02d/f%05d.html", d/10, d%10, i)
}

func (b *builder) large(s Spec) {
	b.check(os.MkdirAll(b.p("media"), 0o755))
	for i, size := range s.LargeFiles {
		f, err := os.Create(b.p(fmt.Sprintf("media/large-%d.bin", i)))
		if err != nil {
			b.check(err)
			return
		}
		buf := make([]byte, 1<<20)
		for done := int64(0); done < size; done += int64(len(buf)) {
			b.rng.Read(buf)
			_, err = f.Write(buf[:min(int64(len(buf)), size-done)])
			b.check(err)
		}
		b.check(f.Close())
	}
}

func (b *builder) sparse(s Spec) {
	if s.SparseSize == 0 {
		return
	}
	f, err := os.Create(b.p("media/sparse.img"))
	if err != nil {
		b.check(err)
		return
	}
	for _, off := range []int64{0, s.SparseSize/2 + 4093, s.SparseSize - 10} {
		_, err := f.WriteAt(bytes.Repeat([]byte("data"), 3), off)
		b.check(err)
	}
	b.check(f.Truncate(s.SparseSize))
	b.check(f.Close())
}

func (b *builder) odd(Spec) {
	b.check(os.MkdirAll(b.p("odd"), 0o755))
	for _, n := range OddNames {
		b.write("odd/"+n, []byte(n), 0o644)
	}
	deep := "odd/deep"
	for i := 0; i < 60; i++ {
		deep += fmt.Sprintf("/level-%02d", i)
	}
	b.check(os.MkdirAll(b.p(deep), 0o755))
	b.write(deep+"/bottom.txt", []byte("60 levels down"), 0o600)
	b.check(os.Mkdir(b.p("odd/"+strings.Repeat("D", 255)), 0o700))
	b.write("odd/"+strings.Repeat("D", 255)+"/inside", []byte("x"), 0o644)
	b.write("odd/empty", nil, 0o644)
}

func (b *builder) links(Spec) {
	b.check(os.Symlink("../site/d00/e00/f00000.html", b.p("odd/rel-link")))
	b.check(os.Symlink("/etc/passwd", b.p("odd/abs-link")))
	b.check(os.Symlink("missing/target", b.p("odd/dangling")))
	b.check(os.Symlink(strings.Repeat("t", 1000), b.p("odd/long-target")))
	b.check(os.Link(b.p("media/large-0.bin"), b.p("site/hardlink-to-large")))
	b.check(os.Link(b.p("odd/empty"), b.p("odd/empty-second-name")))
	b.check(os.Link(b.p("odd/empty"), b.p("site/d00/empty-third-name")))
}

func (b *builder) specials(Spec) {
	b.check(unix.Mkfifo(b.p("odd/fifo"), 0o620))
	b.check(unix.Mknod(b.p("odd/null-dev"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	b.check(unix.Mknod(b.p("odd/block-dev"), unix.S_IFBLK|0o600, int(unix.Mkdev(259, 70000))))
}

// ACL xattr values (Linux's binary posix_acl_xattr format): user::rwx group::r-x
// group:50:rwx mask::rwx other::---, and a default ACL giving group 50 read.
var (
	aclAccess  = aclXattr([][3]uint32{{0x01, 7, 0xffffffff}, {0x04, 5, 0xffffffff}, {0x08, 7, 50}, {0x10, 7, 0xffffffff}, {0x20, 0, 0xffffffff}})
	aclDefault = aclXattr([][3]uint32{{0x01, 7, 0xffffffff}, {0x04, 5, 0xffffffff}, {0x08, 4, 50}, {0x10, 5, 0xffffffff}, {0x20, 0, 0xffffffff}})
)

func aclXattr(entries [][3]uint32) []byte {
	out := []byte{2, 0, 0, 0}
	for _, e := range entries {
		out = append(out, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8),
			byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	return out
}

// metadata gives entries owners, special modes, xattrs, ACLs and nanosecond times; last, so
// that directory times are not moved by later writes.
func (b *builder) metadata(s Spec) {
	b.check(unix.Setxattr(b.p("media/large-0.bin"), "user.origin", []byte("isilon-legacy"), 0))
	b.check(unix.Setxattr(b.p("odd/empty"), "user.empty-value", nil, 0))
	b.check(unix.Setxattr(b.p("site"), "user.site", []byte("shop"), 0))
	b.check(unix.Setxattr(b.p(s.SmallFile(1)), "system.posix_acl_access", aclAccess, 0))
	b.check(unix.Setxattr(b.p("site/d00"), "system.posix_acl_default", aclDefault, 0))
	b.check(unix.Lchown(b.p("odd/rel-link"), 33, 33))
	for i, rel := range []string{s.SmallFile(2), s.SmallFile(s.SmallFiles - 1), "media/large-0.bin"} {
		b.check(os.Chown(b.p(rel), 1000+i, 2000+i))
	}
	b.check(unix.Chmod(b.p(s.SmallFile(3)), 0o4755))
	b.check(unix.Chmod(b.p(s.SmallFile(4)), 0o2711))
	b.check(unix.Chmod(b.p("media"), 0o1777))
	b.check(unix.Chmod(b.p("site/d00/e02"), 0o2775))
	b.times()
}

// times sets nanosecond times on entries, deepest first so parents keep theirs.
func (b *builder) times() {
	var paths []string
	b.check(filepath.Walk(b.root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		sec := 1_500_000_000 + b.rng.Int63n(200_000_000)
		ts := []unix.Timespec{{Sec: sec + 3600, Nsec: b.rng.Int63n(1e9)}, {Sec: sec, Nsec: b.rng.Int63n(1e9)}}
		b.check(unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}
