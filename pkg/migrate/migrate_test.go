package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/memfs"
)

var (
	posix  = migrate.PosixLimits("memfs")
	cephfs = migrate.Limits{Name: "cephfs", NameMax: 255, MinTime: 0, MaxTime: math.MaxUint32,
		Xattrs: true, XattrValueMax: 64 << 10, XattrTotalMax: 64 << 10, DevMajorMax: 0xfff, DevMinorMax: 0xfffff}
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, f migrate.FS, path string, perm uint32, chunks map[int64][]byte, size int64) {
	t.Helper()
	w, err := f.Create(path, perm)
	must(t, err)
	for off, b := range chunks {
		_, err := w.WriteAt(b, off)
		must(t, err)
	}
	must(t, w.Truncate(size))
	must(t, w.Close())
}

func setattr(t *testing.T, f migrate.FS, path string, typ migrate.FileType, uid, perm uint32, mtime int64) {
	t.Helper()
	must(t, f.SetAttr(path, typ, migrate.Owner{UID: uid, GID: uid + 1, Perm: perm,
		Atime: migrate.Timespec{Sec: mtime + 7, Nsec: 123}, Mtime: migrate.Timespec{Sec: mtime, Nsec: 987654321}}))
}

// sourceTree builds what a hosted site holds: nested directories, small and sparse files,
// symlinks, hard links, xattrs and ACLs, special files, setuid/sticky modes, odd names.
func sourceTree(t *testing.T) *memfs.FS {
	f := memfs.New(posix)
	must(t, f.Mkdir("www", 0o755))
	must(t, f.Mkdir("www/uploads", 0o1777))
	deep := "www"
	for i := 0; i < 12; i++ {
		deep += "/d" + fmt.Sprint(i)
		must(t, f.Mkdir(deep, 0o750))
	}
	write(t, f, deep+"/bottom.txt", 0o640, map[int64][]byte{0: []byte("deep")}, 4)
	for i := 0; i < 40; i++ {
		p := fmt.Sprintf("www/uploads/f%02d", i)
		write(t, f, p, 0o644, map[int64][]byte{0: bytes.Repeat([]byte{byte(i + 1)}, 100+i*37)}, int64(100+i*37))
		setattr(t, f, p, migrate.TypeRegular, uint32(1000+i%3), 0o644, 1_600_000_000+int64(i))
	}
	// 5 MiB sparse: data at 0, at 3 MiB (crossing a chunk), hole at the end.
	write(t, f, "www/sparse.img", 0o600, map[int64][]byte{0: []byte("head"), 3<<20 - 10: bytes.Repeat([]byte("x"), 5000)}, 5<<20)
	write(t, f, "www/big.bin", 0o644, map[int64][]byte{0: randBytes(3<<20 + 17)}, 3<<20+17)
	write(t, f, "www/empty", 0o644, nil, 0)
	must(t, f.Link("www/big.bin", "www/big-link.bin"))
	must(t, f.Link("www/big.bin", "www/uploads/third-name"))
	must(t, f.Symlink("../etc/passwd", "www/escape"))
	must(t, f.Symlink("big.bin", "www/rel"))
	must(t, f.Mknod("www/fifo", migrate.TypeFifo, 0o620, 0))
	must(t, f.Mknod("www/tty", migrate.TypeChar, 0o600, 0x0405))
	write(t, f, "www/suid", 0o4755, map[int64][]byte{0: []byte("#!/bin/sh\n")}, 10)
	setattr(t, f, "www/suid", migrate.TypeRegular, 0, 0o6755, 1_500_000_000)
	must(t, f.SetXattr("www/big.bin", "user.origin", []byte("isilon")))
	must(t, f.SetXattr("www/uploads", "system.posix_acl_default", []byte{2, 0, 0, 0, 1, 0, 7, 0}))
	must(t, f.SetXattr("www/uploads", "ceph.dir.layout", []byte("pool=x"))) // the storage's own: not carried
	for _, name := range []string{"ünïcødé ✓", "new\nline", strings.Repeat("n", 255), " lead", "-dash", "back\\slash"} {
		write(t, f, "www/"+name, 0o644, map[int64][]byte{0: []byte(name)}, int64(len(name)))
	}
	setattr(t, f, "www/escape", migrate.TypeSymlink, 33, 0, 1_400_000_000)
	setattr(t, f, deep, migrate.TypeDir, 5, 0o2750, 1_300_000_000)
	setattr(t, f, "www/uploads", migrate.TypeDir, 33, 0o1777, 1_300_000_001)
	setattr(t, f, "www", migrate.TypeDir, 33, 0o755, 1_300_000_002)
	setattr(t, f, "", migrate.TypeDir, 0, 0o755, 1_300_000_003)
	return f
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	return b
}

// walk is the tests' own view of a tree, built without the engine's code.
type view struct {
	attr   migrate.Attr
	link   string
	xattrs map[string]string
	data   string
	holes  string
}

func walk(t *testing.T, f migrate.FS) map[string]view {
	t.Helper()
	out := map[string]view{}
	var rec func(dir string)
	rec = func(dir string) {
		ents, err := f.ReadDir(dir)
		must(t, err)
		for _, e := range ents {
			p := filepath.Join(dir, e.Name)
			v := view{attr: e.Attr, xattrs: map[string]string{}}
			x, err := f.Xattrs(p)
			must(t, err)
			for k, val := range x {
				if !strings.HasPrefix(k, "ceph.") {
					v.xattrs[k] = string(val)
				}
			}
			switch e.Attr.Type {
			case migrate.TypeDir:
				rec(p)
			case migrate.TypeSymlink:
				v.link, err = f.Readlink(p)
				must(t, err)
			case migrate.TypeRegular:
				v.data, v.holes = readAll(t, f, p, e.Attr.Size)
			}
			out[p] = v
		}
	}
	root, err := f.Lstat("")
	must(t, err)
	out["."] = view{attr: root}
	rec("")
	return out
}

func readAll(t *testing.T, f migrate.FS, p string, size int64) (string, string) {
	r, err := f.Open(p)
	must(t, err)
	defer r.Close()
	b := make([]byte, size)
	if size > 0 {
		n, err := r.ReadAt(b, 0)
		if int64(n) != size || (err != nil && err != io.EOF) {
			t.Fatalf("read %s: %d bytes, %v", p, n, err)
		}
	}
	var regions []string
	for off := int64(0); off < size; {
		s, e, err := r.Data(off)
		if err == io.EOF {
			break
		}
		must(t, err)
		regions = append(regions, fmt.Sprintf("%d-%d", s, e))
		off = e
	}
	return string(b), strings.Join(regions, ",")
}

// same compares two trees: content, holes, metadata, and which names share an inode.
func same(t *testing.T, src, dst migrate.FS) {
	t.Helper()
	a, b := walk(t, src), walk(t, dst)
	var diffs []string
	for p, va := range a {
		vb, ok := b[p]
		if !ok {
			diffs = append(diffs, p+": missing on the target")
			continue
		}
		x, y := va.attr, vb.attr
		if x.Type != y.Type || (x.Type != migrate.TypeSymlink && x.Perm != y.Perm) || x.UID != y.UID || x.GID != y.GID ||
			x.Mtime != y.Mtime || x.Size != y.Size || x.Rdev != y.Rdev || (x.Type != migrate.TypeDir && x.Atime != y.Atime) {
			diffs = append(diffs, fmt.Sprintf("%q: attrs %+v vs %+v", p, x, y))
		}
		if va.link != vb.link || va.data != vb.data || fmt.Sprint(va.xattrs) != fmt.Sprint(vb.xattrs) {
			diffs = append(diffs, fmt.Sprintf("%q: content, link or xattrs differ", p))
		}
		if va.holes != vb.holes {
			diffs = append(diffs, fmt.Sprintf("%q: data regions %s vs %s", p, va.holes, vb.holes))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, p+": extra on the target")
		}
	}
	diffs = append(diffs, linkDiffs(a, b)...)
	if len(diffs) > 0 {
		sort.Strings(diffs)
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

func linkDiffs(a, b map[string]view) []string {
	var out []string
	for p, va := range a {
		for q, vq := range a {
			if p < q && va.attr.Type != migrate.TypeDir && vq.attr.Type != migrate.TypeDir {
				if (va.attr.Ino == vq.attr.Ino) != (b[p].attr.Ino == b[q].attr.Ino) {
					out = append(out, fmt.Sprintf("%q and %q: hard link structure differs", p, q))
				}
			}
		}
	}
	return out
}

func run(t *testing.T, src, dst migrate.FS, state string, mod func(*migrate.Options)) (*migrate.Result, error) {
	t.Helper()
	o := migrate.Options{Source: src, Target: dst, StateDir: state, Pair: "test", Parallel: 4}
	if mod != nil {
		mod(&o)
	}
	return migrate.Run(context.Background(), o)
}

func TestMigrateFaithful(t *testing.T) {
	src, dst := sourceTree(t), memfs.New(posix)
	res, err := run(t, src, dst, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("run: %v\n%+v", err, res.Differences)
	}
	same(t, src, dst)
	if res.Verified.Files == 0 || len(res.Differences) != 0 {
		t.Fatalf("verification: %+v, differences %v", res.Verified, res.Differences)
	}
	if res.Linked != 2 {
		t.Fatalf("linked %d names, want 2", res.Linked)
	}
	// A hole is not written: of the 5 MiB sparse file only two 4 KiB-aligned runs are.
	if res.Copied.Bytes > 3<<20+17+50000+10_000 {
		t.Fatalf("wrote %d bytes: holes were filled", res.Copied.Bytes)
	}
}

func TestMigrateSecondRunCopiesNothing(t *testing.T) {
	src, dst, state := sourceTree(t), memfs.New(posix), t.TempDir()
	_, err := run(t, src, dst, state, nil)
	must(t, err)
	res, err := run(t, src, dst, state, nil)
	must(t, err)
	if res.Copied.Files != 0 || res.Linked != 0 || res.Metadata != 0 || res.Removed != 0 {
		t.Fatalf("an unchanged source was copied again: %+v", res)
	}
	same(t, src, dst)
}

func TestPreflightStopsBeforeCopying(t *testing.T) {
	src := sourceTree(t)
	write(t, src, "www/old.txt", 0o644, map[int64][]byte{0: []byte("1969")}, 4)
	setattr(t, src, "www/old.txt", migrate.TypeRegular, 1, 0o644, -86400*365)
	write(t, src, "www/future.txt", 0o644, map[int64][]byte{0: []byte("2200")}, 4)
	setattr(t, src, "www/future.txt", migrate.TypeRegular, 1, 0o644, 7258118400)
	must(t, src.Mknod("www/bigdev", migrate.TypeBlock, 0o600, migrate.Mkdev(5000, 1)))
	dst := memfs.New(cephfs)
	res, err := run(t, src, dst, t.TempDir(), nil)
	if !errors.Is(err, migrate.ErrUnrepresentable) {
		t.Fatalf("run: %v, want ErrUnrepresentable", err)
	}
	want := map[string]string{"www/old.txt": migrate.ProblemTime, "www/future.txt": migrate.ProblemTime, "www/bigdev": migrate.ProblemDevice}
	got := map[string]string{}
	for _, p := range res.Problems {
		got[p.Path] = p.Kind
	}
	for p, k := range want {
		if got[p] != k {
			t.Fatalf("problems %+v lack %s %s", res.Problems, p, k)
		}
	}
	if ents, _ := dst.ReadDir(""); len(ents) != 0 {
		t.Fatalf("the target was written before the problems were reported: %v", ents)
	}
	res, err = run(t, src, dst, t.TempDir(), func(o *migrate.Options) { o.Unrepresentable = migrate.PolicyClamp })
	if err != nil {
		t.Fatalf("clamp: %v %v", err, res.Differences)
	}
	if a, _ := dst.Lstat("www/old.txt"); a.Mtime.Sec != 0 {
		t.Fatalf("clamped mtime %v, want 0", a.Mtime)
	}
	if a, _ := dst.Lstat("www/future.txt"); a.Mtime.Sec != math.MaxUint32 {
		t.Fatalf("clamped mtime %v, want %d", a.Mtime, uint32(math.MaxUint32))
	}
	if _, err := dst.Lstat("www/bigdev"); !migrate.IsNotExist(err) {
		t.Fatalf("a device that cannot be created was not skipped: %v", err)
	}
}

func TestPreflightSkipLeavesSubtreeOut(t *testing.T) {
	src := memfs.New(posix)
	long := strings.Repeat("x", 200)
	must(t, src.Mkdir(long, 0o755))
	write(t, src, long+"/inside", 0o644, map[int64][]byte{0: []byte("a")}, 1)
	write(t, src, "kept", 0o644, map[int64][]byte{0: []byte("b")}, 1)
	must(t, src.SetXattr("kept", "user.big", bytes.Repeat([]byte("v"), 300)))
	small := posix
	small.NameMax, small.XattrValueMax = 100, 200
	dst := memfs.New(small)
	res, err := run(t, src, dst, t.TempDir(), func(o *migrate.Options) { o.Unrepresentable = migrate.PolicySkip })
	must(t, err)
	if len(res.Problems) != 2 {
		t.Fatalf("problems: %+v", res.Problems)
	}
	ents, _ := dst.ReadDir("")
	if len(ents) != 0 {
		t.Fatalf("skipped entries were copied: %v", ents)
	}
}

// failAt fails the target's n-th operation and every one after it, as a killed run would
// stop: whatever was not finished before stays unfinished.
func failAt(f *memfs.FS, n int) {
	start := f.Ops
	f.Fail = func(op, path string) error {
		if f.Ops-start >= n {
			return syscall.EIO
		}
		return nil
	}
}

// creates records every path a run creates a regular file at.
type creates struct {
	migrate.FS
	mu    sync.Mutex
	paths map[string]bool
}

func (c *creates) Create(p string, perm uint32) (migrate.Writer, error) {
	c.mu.Lock()
	c.paths[p] = true
	c.mu.Unlock()
	return c.FS.Create(p, perm)
}

func TestResumeAfterInterruption(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	interrupted := 0
	for i := 0; i < 10; i++ {
		src, dst, state := sourceTree(t), memfs.New(posix), t.TempDir()
		n := 1 + rng.Intn(700)
		failAt(dst, n)
		_, err := run(t, src, dst, state, func(o *migrate.Options) { o.CommitInterval = time.Millisecond })
		if err == nil {
			continue // finished before the failure point
		}
		interrupted++
		dst.Fail = nil
		j, err := migrate.OpenJournal(state, "test")
		must(t, err)
		finished := map[string]bool{}
		for _, r := range j.Records() {
			finished[r.Path] = r.Type == migrate.TypeRegular
		}
		j.Close()
		c := &creates{FS: dst, paths: map[string]bool{}}
		res, err := run(t, src, c, state, nil)
		if err != nil {
			t.Fatalf("interrupted at op %d: rerun: %v %v", n, err, res.Differences)
		}
		same(t, src, dst)
		for p := range c.paths {
			if finished[p] {
				t.Fatalf("interrupted at op %d: %q was journaled finished and copied again", n, p)
			}
		}
		t.Logf("interrupted at op %d: %d files finished before; rerun copied %d files, %d bytes, recopied %d files, %d bytes",
			n, len(finished), res.Copied.Files, res.Copied.Bytes, res.Recopied.Files, res.Recopied.Bytes)
	}
	if interrupted < 5 {
		t.Fatalf("only %d runs were interrupted", interrupted)
	}
}

func TestFinalPassAfterMutations(t *testing.T) {
	src, dst, state := sourceTree(t), memfs.New(posix), t.TempDir()
	_, err := run(t, src, dst, state, nil)
	must(t, err)
	write(t, src, "www/new.txt", 0o600, map[int64][]byte{0: []byte("created")}, 7)
	write(t, src, "www/uploads/f01", 0o644, map[int64][]byte{0: []byte("modified")}, 8)
	must(t, src.Remove("www/uploads/f02"))
	must(t, src.Rename("www/big.bin", "www/renamed.bin"))
	must(t, src.Rename("www/d0", "www/moved-dir"))
	setattr(t, src, "www/uploads/f03", migrate.TypeRegular, 1000, 0o600, 1_600_000_003)
	must(t, src.Link("www/uploads/f04", "www/uploads/f04-link"))
	must(t, src.SetXattr("www/empty", "user.added", []byte("1")))
	must(t, src.RemoveXattr("www/big-link.bin", "user.origin"))
	must(t, src.Remove("www/rel"))
	must(t, src.Mkdir("www/rel", 0o700)) // a symlink became a directory
	res, err := run(t, src, dst, state, func(o *migrate.Options) { o.Final = true })
	if err != nil {
		t.Fatalf("final: %v %v", err, res.Differences)
	}
	same(t, src, dst)
	if res.Renamed != 2 {
		t.Fatalf("renamed %d, want the file and the directory renamed on the target", res.Renamed)
	}
	if res.Copied.Bytes > 100 {
		t.Fatalf("final pass copied %d bytes; only small files changed", res.Copied.Bytes)
	}
}

func TestVerifyReportsCorruptTarget(t *testing.T) {
	src, dst, state := sourceTree(t), memfs.New(posix), t.TempDir()
	_, err := run(t, src, dst, state, nil)
	must(t, err)
	w, err := dst.Create("www/uploads/f05", 0o644) // truncates: same name, other content
	must(t, err)
	_, err = w.WriteAt(bytes.Repeat([]byte{0xee}, 100+5*37), 0)
	must(t, err)
	must(t, w.Close())
	a, _ := src.Lstat("www/uploads/f05")
	setattr(t, dst, "www/uploads/f05", migrate.TypeRegular, a.UID, a.Perm, a.Mtime.Sec)
	must(t, dst.SetXattr("www/uploads/f06", "user.stray", []byte("x")))
	res, err := run(t, src, dst, state, func(o *migrate.Options) { o.VerifyMode = migrate.VerifyFull })
	if !errors.Is(err, migrate.ErrDifferences) {
		t.Fatalf("run: %v, want ErrDifferences", err)
	}
	found := false
	for _, d := range res.Differences {
		found = found || (d.Path == "www/uploads/f05" && d.What == "content")
	}
	if !found {
		t.Fatalf("differences %v lack the corrupt content of www/uploads/f05", res.Differences)
	}
}

// An ext4 target's lost+found is the filesystem's: a source without one neither removes it
// nor finds it a difference.
func TestReservedTargetEntriesStay(t *testing.T) {
	src := sourceTree(t)
	ext4 := posix
	ext4.Reserved = []string{"lost+found"}
	dst := memfs.New(ext4)
	must(t, dst.Mkdir("lost+found", 0o700))
	write(t, dst, "lost+found/#1234", 0o600, map[int64][]byte{0: []byte("orphan")}, 6)
	must(t, dst.Mkdir("stray", 0o700))
	res, err := run(t, src, dst, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("%v: %v", err, res.Differences)
	}
	if _, err := dst.Lstat("lost+found/#1234"); err != nil {
		t.Fatalf("the target's lost+found was touched: %v", err)
	}
	if _, err := dst.Lstat("stray"); !migrate.IsNotExist(err) {
		t.Fatalf("an entry the source lacks stayed on the target: %v", err)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	src, dst := sourceTree(t), memfs.New(posix)
	res, err := run(t, src, dst, t.TempDir(), func(o *migrate.Options) { o.DryRun = true })
	must(t, err)
	if res.Plan.Copies == 0 || res.Plan.CopyBytes == 0 || res.Plan.Links != 2 {
		t.Fatalf("plan: %+v", res.Plan)
	}
	if ents, _ := dst.ReadDir(""); len(ents) != 0 {
		t.Fatalf("dry run wrote %v", ents)
	}
}

func TestStateDirBelongsToOnePair(t *testing.T) {
	state := t.TempDir()
	_, err := run(t, sourceTree(t), memfs.New(posix), state, nil)
	must(t, err)
	_, err = run(t, sourceTree(t), memfs.New(posix), state, func(o *migrate.Options) { o.Pair = "other" })
	if err == nil || !strings.Contains(err.Error(), "belongs to migration") {
		t.Fatalf("a state dir of another migration was used: %v", err)
	}
	j, err := migrate.OpenJournal(state, "test")
	must(t, err)
	defer j.Close()
	if _, err := migrate.OpenJournal(state, "test"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("two runs on one state dir: %v", err)
	}
}
