package migratetest

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/migrate/treecheck"
)

// targetOf finds the volume a run wrote to; it is deleted when the test ends.
func (s *stack) targetOf(res *result) *backend.Volume {
	s.t.Helper()
	id, err := volid.ParseVolume(res.Target)
	if err != nil {
		s.t.Fatalf("result names target %q: %v", res.Target, err)
	}
	ctrl := s.b.Controllers[id.Backend]
	v, err := ctrl.GetVolume(ctxT(s.t), id, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { ctrl.DeleteVolume(context.Background(), id, nil) })
	return v
}

// same walks a volume staged by the node plugin and compares it with want.
func (s *stack) same(v *backend.Volume, want treecheck.Manifest, c treecheck.Compare) treecheck.Manifest {
	s.t.Helper()
	dir, unstage := s.stage(v, v.ID.Backend == rbdBackend)
	defer unstage()
	got, err := treecheck.Walk(dir)
	if err != nil {
		s.t.Fatal(err)
	}
	if d := treecheck.Diff(want, got, c); len(d) > 0 {
		s.t.Fatalf("%s differs from the source in %d ways:\n%s", v.ID, len(d), strings.Join(d[:min(len(d), 40)], "\n"))
	}
	return got
}

func summary(res *result) string {
	r := res.Result
	return fmt.Sprintf("copied %d files %s, recopied %d files %s, linked %d, renamed %d, removed %d, metadata %d; verified %d files; scan %.1fs copy %.1fs verify %.1fs",
		r.Copied.Files, human(r.Copied.Bytes), r.Recopied.Files, human(r.Recopied.Bytes), r.Linked, r.Renamed, r.Removed, r.Metadata,
		r.Verified.Files, r.ScanTime, r.CopyTime, r.VerifyTime)
}

func human(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// objectsOf counts the RADOS objects holding a CephFS file's data: holes have none.
func objectsOf(t *testing.T, path string) int {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("rados", "-p", "cephfs.cephfs.data", "ls").Output()
	if err != nil {
		t.Fatalf("rados ls: %v", err)
	}
	prefix := fmt.Sprintf("%x.", st.Ino)
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// TestMigrate runs every migration on one shared stack, in parallel, each with a tenant of
// its own: they wait on Ceph and the NFS server far more than they compute.
func TestMigrate(t *testing.T) {
	sh := newShared(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *stack)
	}{
		{"IsilonToCephFS", testIsilonToCephFS},
		{"ResumesAfterKill", testResumesAfterKill},
		{"RBDToCephFSAndBack", testRBDToCephFSAndBack},
		{"DirectoryToIsilon", testDirectoryToIsilon},
		{"BulkPassReadsASnapshot", testBulkPassReadsASnapshot},
		{"RBDBulkPassReadsASnapshot", testRBDBulkPassReadsASnapshot},
		{"IsilonBulkPassReadsASnapshot", testIsilonBulkPassReadsASnapshot},
		{"ReadBackFromRADOS", testReadBackFromRADOS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, sh.stack(t))
		})
	}
}

// testIsilonToCephFS copies an Isilon site (the simulator's directory, read over
// NFSv3 through ganesha without a mount) to a CephFS volume, then mutates the source and
// runs the final pass.
func testIsilonToCephFS(t *testing.T, s *stack) {
	src := s.volume(isilonBackend, "site-legacy", 4<<30)
	dir := s.isilonDir(src)
	if err := treecheck.Build(dir, treecheck.Full); err != nil {
		t.Fatalf("build the tree in %s (context %v): %v", dir, src.Context, err)
	}
	want, err := treecheck.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	// Both passes read live: the simulator's snapshots renumber files (see its README), so
	// a final pass after a snapshot bulk pass cannot tell renames (the rename checks below
	// mean a live bulk pass; IsilonBulkPassReadsASnapshot reads a snapshot).
	args := s.args(src.ID.String(), state, "--to", cephfsBackend, "--snapshot", "never")
	res := s.migrate(args...).must(t, "migrate Isilon -> CephFS")
	t.Logf("Isilon -> CephFS: %s", summary(res))
	target := s.targetOf(res)
	if target.ID.Tenant != s.tenant || target.CapacityBytes < src.CapacityBytes {
		t.Fatalf("target %s of %d bytes: want tenant %s, at least %d bytes", target.ID, target.CapacityBytes, s.tenant, src.CapacityBytes)
	}
	// NFSv3 carries no xattrs: the comparison leaves them out (the source has some).
	s.same(target, want, treecheck.Compare{NoXattrs: true})
	view, unstage := s.stage(target, false)
	if n := objectsOf(t, filepath.Join(view, "media/sparse.img")); n > 4 {
		t.Fatalf("the 1 GiB sparse file has %d RADOS objects on the target: its holes were written", n)
	}
	unstage()

	mutate(t, dir, treecheck.Full)
	want, err = treecheck.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	res = s.migrate(append(args, "--final")...).must(t, "migrate --final")
	t.Logf("final pass: %s", summary(res))
	// The bulk pass read every file over NFS after want was taken: the server moved their
	// atimes, and the final pass carries the moved ones.
	s.same(target, want, treecheck.Compare{NoXattrs: true, NoAtimes: true})
	if res.Result.Renamed < 2 || res.Result.Removed < 1 || res.Result.Linked < 1 || res.Result.Copied.Bytes > 1<<20 {
		t.Fatalf("final pass did not rename, remove and link, or copied too much: %s", summary(res))
	}
}

// mutate changes a site as an application would between the bulk and the final pass.
func mutate(t *testing.T, dir string, spec treecheck.Spec) {
	p := func(rel string) string { return filepath.Join(dir, rel) }
	steps := []error{
		os.WriteFile(p("site/new-page.html"), []byte("created after the bulk pass"), 0o640),
		os.WriteFile(p(spec.SmallFile(0)), []byte("modified"), 0o644),
		os.Remove(p(spec.SmallFile(11))),
		os.Rename(p("media/large-1.bin"), p("media/renamed-large.bin")),
		os.Rename(p("site/d09"), p("site/moved-d09")),
		unix.Chmod(p(spec.SmallFile(22)), 0o600),
		os.Link(p(spec.SmallFile(33)), p("site/new-hard-link")),
		os.Chown(p(spec.SmallFile(44)), 4444, 4445),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("mutation %d: %v", i, err)
		}
	}
}

// testResumesAfterKill kills shipholdctl with SIGKILL at random points of five runs, each
// with a source (and so a target) of its own, in parallel; each rerun finishes with an
// identical tree and reports what it copied again.
func testResumesAfterKill(t *testing.T, s *stack) {
	spec := treecheck.Spec{SmallFiles: 500, Dirs: 20, LargeFiles: []int64{24 << 20, 9<<20 + 4321}, SparseSize: 64 << 20, Seed: 2}
	for i := 1; i <= 5; i++ {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			t.Parallel()
			killAndResume(t, &stack{shared: s.shared, t: t, tenant: s.tenant}, i, spec)
		})
	}
}

func killAndResume(t *testing.T, s *stack, i int, spec treecheck.Spec) {
	src := s.volume(isilonBackend, fmt.Sprintf("site-killed-%d", i), 1<<30)
	dir := s.isilonDir(src)
	if err := treecheck.Build(dir, spec); err != nil {
		t.Fatal(err)
	}
	want, err := treecheck.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	args := s.args(src.ID.String(), t.TempDir(), "--to", cephfsBackend)
	// The killed run reads at 8 MB/s (its 35 MB of data alone take over 3 s), so a kill
	// within 3 s of the copy's start lands part-way whatever the machine's load; the rerun
	// reads at full speed.
	after := time.Duration(rand.New(rand.NewSource(time.Now().UnixNano())).Int63n(int64(3 * time.Second)))
	killed := s.migrateKilled(after, append(args, "--bwlimit", "8M")...)
	res := s.migrate(args...).must(t, fmt.Sprintf("rerun %d", i))
	t.Logf("run %d: SIGKILL %v into copying (killed: %v); rerun %s", i, after.Round(time.Millisecond), killed, summary(res))
	if !killed || res.Result.Copied.Files == 0 {
		t.Fatalf("run %d was not killed part-way (killed: %v, rerun copied %d files): the kill point is too late", i, killed, res.Result.Copied.Files)
	}
	// The rerun reads a snapshot taken again, whose copy reuses inode numbers for other
	// files: nothing was renamed in the source, so nothing may be renamed on the target.
	if res.Result.Renamed != 0 {
		t.Fatalf("run %d: the rerun renamed %d target entries; the source renamed none", i, res.Result.Renamed)
	}
	// The killed run read files over NFS (the server moved their atimes), which the rerun
	// carries: atimes are left out.
	s.same(s.targetOf(res), want, treecheck.Compare{NoXattrs: true, NoAtimes: true})
}

// testRBDToCephFSAndBack copies an RBD volume (staged read-only with the node
// plugin's code) to CephFS, and that CephFS volume to a new RBD volume, each with every
// xattr and ACL.
func testRBDToCephFSAndBack(t *testing.T, s *stack) {
	src := s.volume(rbdBackend, "site-block", 4<<30)
	dir, unstage := s.stage(src, false)
	if err := treecheck.Build(dir, treecheck.Full); err != nil {
		t.Fatal(err)
	}
	want, err := treecheck.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	unstage()
	res := s.migrate(s.args(src.ID.String(), t.TempDir(), "--to", cephfsBackend)...).must(t, "migrate RBD -> CephFS")
	t.Logf("RBD -> CephFS: %s", summary(res))
	onCephFS := s.targetOf(res)
	s.same(onCephFS, want, treecheck.Compare{})

	res = s.migrate(s.args(onCephFS.ID.String(), t.TempDir(), "--to", rbdBackend)...).must(t, "migrate CephFS -> RBD")
	t.Logf("CephFS -> RBD: %s", summary(res))
	back := s.targetOf(res)
	got := s.same(back, want, treecheck.Compare{})
	if e := got["media/sparse.img"]; e == nil || e.Allocated > 1<<20 {
		t.Fatalf("the sparse file takes %d bytes on the RBD target: its holes were written", e.Allocated)
	}
}

// testDirectoryToIsilon copies a plain directory onto a new Isilon volume over NFSv3
// (libnfs writes: files, links, devices, times). NFS holds neither xattrs nor times finer
// than libnfs sets (microseconds): the run first stops listing them, then --unrepresentable
// clamp copies the rest.
func testDirectoryToIsilon(t *testing.T, s *stack) {
	src := filepath.Join(t.TempDir(), "site")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := treecheck.Spec{SmallFiles: 300, Dirs: 10, LargeFiles: []int64{20 << 20}, SparseSize: 64 << 20, Seed: 6}
	if err := treecheck.Build(src, spec); err != nil {
		t.Fatal(err)
	}
	want, err := treecheck.Walk(src)
	if err != nil {
		t.Fatal(err)
	}
	args := s.args(src, t.TempDir(), "--tenant", s.tenant, "--size", "1Gi", "--to", isilonBackend)
	r := s.migrate(args...)
	if r.code != 3 || r.res == nil || len(r.res.Result.Problems) == 0 {
		t.Fatalf("ns times and xattrs onto NFS: exit %d, want 3 with the problems listed\n%s", r.code, tail(r.stderr, 10))
	}
	kinds := map[string]bool{}
	for _, p := range r.res.Result.Problems {
		kinds[p.Kind] = true
	}
	if !kinds["time-out-of-range"] || !kinds["xattr-not-storable"] {
		t.Fatalf("problems %v: want the times and the xattrs", kinds)
	}
	// nfs-ganesha answers a symlink's SETATTR of times with OK and keeps its own
	// (https://github.com/nfs-ganesha/nfs-ganesha/issues/983): the verification must say
	// so, and say nothing else.
	r = s.migrate(append(args, "--unrepresentable", "clamp")...)
	if r.code != 4 || r.res == nil {
		t.Fatalf("migrate --unrepresentable clamp: exit %d, want 4 (symlink times)\n%s", r.code, tail(r.stderr, 20))
	}
	for _, d := range r.res.Result.Differences {
		if (d.What != "mtime" && d.What != "atime") || want[d.Path] == nil || want[d.Path].Type != unix.S_IFLNK {
			t.Fatalf("a difference other than a symlink's times: %s", d)
		}
	}
	res := r.res
	t.Logf("directory -> Isilon: %s; %d differences, all symlink times", summary(res), len(res.Result.Differences))
	target := s.targetOf(res)
	got, err := treecheck.Walk(s.isilonDir(target))
	if err != nil {
		t.Fatal(err)
	}
	if d := treecheck.Diff(want, got, treecheck.Compare{NoXattrs: true, Microseconds: true, NoSymlinkTimes: true}); len(d) > 0 {
		t.Fatalf("the Isilon volume differs from the directory in %d ways:\n%s", len(d), strings.Join(d[:min(len(d), 40)], "\n"))
	}
	if e := got["media/sparse.img"]; e.Allocated > 1<<20 {
		t.Fatalf("the sparse file takes %d bytes on the Isilon volume: its holes were written", e.Allocated)
	}
}
