package posixfs_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/posixfs"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeTree writes, with plain syscalls, what the migration must carry.
func makeTree(t *testing.T, root string) {
	must(t, os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "a/file"), []byte("hello"), 0o640))
	sparse, err := os.Create(filepath.Join(root, "a/sparse"))
	must(t, err)
	_, err = sparse.WriteAt([]byte("middle"), 8<<20)
	must(t, err)
	must(t, sparse.Truncate(16<<20))
	sparse.Close()
	must(t, os.Link(filepath.Join(root, "a/file"), filepath.Join(root, "a/b/hardlink")))
	must(t, os.Symlink("../file", filepath.Join(root, "a/b/link")))
	must(t, unix.Mkfifo(filepath.Join(root, "a/fifo"), 0o600))
	must(t, unix.Mknod(filepath.Join(root, "a/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Setxattr(filepath.Join(root, "a/file"), "user.site", []byte("shop"), 0))
	must(t, os.WriteFile(filepath.Join(root, "a/b/c/new\nline ✓"), nil, 0o644))
	must(t, unix.Chmod(filepath.Join(root, "a/b/c"), 0o3770))
	must(t, os.Lchown(filepath.Join(root, "a/b/link"), 33, 34))
	must(t, os.Chown(filepath.Join(root, "a/file"), 1001, 1002))
	must(t, unix.Chmod(filepath.Join(root, "a/file"), 0o4750))
	ts := []unix.Timespec{{Sec: 1_000_000_001, Nsec: 111}, {Sec: 1_000_000_002, Nsec: 222}}
	for _, p := range []string{"a/b/link", "a/file", "a/sparse", "a/fifo", "a/b/c", "a/b", "a", ""} {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, p), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// listing describes a tree with lstat alone: independent of the package under test. It
// stats everything before reading anything, since reading moves atimes. A symlink's atime
// is left out: reading its target moves it, on the source too.
func listing(t *testing.T, root string) string {
	stats := map[string]*unix.Stat_t{}
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		stats[p] = &st
		paths = append(paths, p)
		return nil
	})
	sort.Strings(paths)
	var lines []string
	inodes := map[uint64]string{}
	for _, p := range paths {
		st := stats[p]
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%q mode=%o uid=%d gid=%d mtime=%d.%d", rel, st.Mode, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			line += fmt.Sprintf(" size=%d -> %s", st.Size, l)
		default:
			line += fmt.Sprintf(" size=%d rdev=%d atime=%d.%d", st.Size, st.Rdev, st.Atim.Sec, st.Atim.Nsec)
		}
		if first, ok := inodes[st.Ino]; ok && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			line += " linked-to=" + first
		}
		inodes[st.Ino] = rel
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, err := os.ReadFile(p)
			must(t, err)
			line += fmt.Sprintf(" data=%x", b[:min(len(b), 16)]) + fmt.Sprint(bytes.Count(b, []byte("middle")))
		}
		buf := make([]byte, 1024)
		if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
			line += " xattrs=" + strings.ReplaceAll(string(buf[:n]), "\x00", ",")
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func TestCopyBetweenLocalTrees(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)
	sfs, err := posixfs.Open(src)
	must(t, err)
	dfs, err := posixfs.Open(dst)
	must(t, err)
	vfs, err := posixfs.Open(dst, posixfs.DropCache())
	must(t, err)
	res, err := migrate.Run(context.Background(), migrate.Options{Source: sfs, Target: dfs, Verify: vfs, StateDir: t.TempDir(), Parallel: 3})
	if err != nil {
		t.Fatalf("%v: %v", err, res.Differences)
	}
	if a, b := listing(t, src), listing(t, dst); a != b {
		t.Fatalf("trees differ:\n--- source\n%s\n--- target\n%s", a, b)
	}
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(dst, "a/sparse"), &st))
	if st.Blocks*512 > 64<<10 {
		t.Fatalf("sparse file takes %d bytes on the target: its holes were filled", st.Blocks*512)
	}
	if res.Verified.Files != 4 { // file (two names), sparse, the empty file, and nothing else
		t.Logf("verified %+v", res.Verified)
	}
}

func TestLimitsOfTheMountedFilesystem(t *testing.T) {
	f, err := posixfs.Open(t.TempDir())
	must(t, err)
	defer f.Close()
	l := f.Limits()
	if l.NameMax != 255 || l.PathMax <= 0 || l.PathMax >= unix.PathMax || !l.Xattrs {
		t.Fatalf("limits %+v", l)
	}
}
