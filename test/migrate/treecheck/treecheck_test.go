package treecheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var small = Spec{SmallFiles: 50, Dirs: 12, LargeFiles: []int64{3 << 20}, SparseSize: 64 << 20, Seed: 3}

// The walker must see every kind of difference a migration could make: a test of the
// migration is only as strong as this.
func TestWalkerSeesEveryDifference(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("building the tree (owners, devices) needs root")
	}
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.Mkdir(src, 0o755))
	must(t, Build(src, small))
	want, err := Walk(src)
	must(t, err)
	mutations := map[string]func(dst string){
		"content":    func(d string) { write(t, d, small.SmallFile(0), "x") },
		"mtime":      func(d string) { touch(t, d, small.SmallFile(5), unix.Timespec{Sec: 1, Nsec: 2}) },
		"mode":       func(d string) { must(t, unix.Chmod(filepath.Join(d, small.SmallFile(3)), 0o755)) },
		"owner":      func(d string) { must(t, os.Lchown(filepath.Join(d, "odd/rel-link"), 0, 0)) },
		"xattr":      func(d string) { must(t, unix.Setxattr(filepath.Join(d, "site"), "user.site", []byte("other"), 0)) },
		"acl":        func(d string) { must(t, unix.Removexattr(filepath.Join(d, "site/d00"), "system.posix_acl_default")) },
		"hard links": func(d string) { copyOver(t, d, "odd/empty-second-name") },
		"link":       func(d string) { relink(t, d, "odd/dangling", "elsewhere") },
		"missing":    func(d string) { must(t, os.Remove(filepath.Join(d, "odd/fifo"))) },
		"extra":      func(d string) { write(t, d, "odd/stray", "") },
		"rdev":       func(d string) { remknod(t, d, "odd/null-dev") },
	}
	for what, mutate := range mutations {
		dst := filepath.Join(t.TempDir(), "dst")
		must(t, os.Mkdir(dst, 0o755))
		must(t, Build(dst, small)) // the same spec builds the same tree
		got, err := Walk(dst)
		must(t, err)
		if d := Diff(want, got, Compare{}); len(d) > 0 {
			t.Fatalf("two builds of one spec differ before any mutation:\n%s", strings.Join(d, "\n"))
		}
		mutate(dst)
		got, err = Walk(dst)
		must(t, err)
		if d := Diff(want, got, Compare{}); len(d) == 0 {
			t.Errorf("the walker misses a %s difference", what)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, d, rel, data string) {
	var st unix.Stat_t
	p := filepath.Join(d, rel)
	_ = unix.Lstat(p, &st)
	must(t, os.WriteFile(p, []byte(data), 0o644))
	touch(t, d, rel, st.Mtim)
}

func touch(t *testing.T, d, rel string, ts unix.Timespec) {
	var st unix.Stat_t
	p := filepath.Join(d, rel)
	must(t, unix.Lstat(p, &st))
	if ts.Sec == 0 && ts.Nsec == 0 {
		ts = st.Mtim
	}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, ts}, unix.AT_SYMLINK_NOFOLLOW))
}

// copyOver breaks a hard link: same content and metadata, another inode.
func copyOver(t *testing.T, d, rel string) {
	p := filepath.Join(d, rel)
	must(t, exec.Command("cp", "-a", p, p+".tmp").Run())
	must(t, os.Rename(p+".tmp", p))
}

func relink(t *testing.T, d, rel, target string) {
	p := filepath.Join(d, rel)
	must(t, os.Remove(p))
	must(t, os.Symlink(target, p))
}

func remknod(t *testing.T, d, rel string) {
	p := filepath.Join(d, rel)
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	must(t, os.Remove(p))
	must(t, unix.Mknod(p, unix.S_IFCHR|st.Mode&0o7777, int(unix.Mkdev(1, 5))))
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW))
}
