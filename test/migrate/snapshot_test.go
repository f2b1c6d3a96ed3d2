package migratetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/migrate/endpoint"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/migrate/treecheck"
)

// migrateWith runs shipholdctl to completion with extra environment.
func (s *stack) migrateWith(env []string, args ...string) *run {
	s.t.Helper()
	cmd := exec.Command(shipholdctl, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := &run{stdout: out.String(), stderr: errb.String(), res: lastResult(out.String())}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// testBulkPassReadsASnapshot copies a CephFS site whose files change once the bulk
// pass's snapshot is taken (a hook in shipholdctl runs the changes between the snapshot and
// the first read): the target holds the snapshot's tree, the snapshot is gone afterwards,
// and --final, reading live, brings the changes. A snapshot a killed run left (taken before
// the tree existed) is removed first, never read.
func testBulkPassReadsASnapshot(t *testing.T, s *stack) {
	src := s.volume(cephfsBackend, "site-snap", 2<<30)
	s.bulkPassReadsSnapshot(src)
}

// testRBDBulkPassReadsASnapshot is the same for an RBD source, its filesystem mounted
// (the site running) while the snapshot is taken and changed after it: the bulk pass reads
// a clone of the snapshot, the final pass the image after the site stopped. Unlike CephFS's,
// this test cannot tell the snapshot from a live read: a second, read-only (noload) mount of
// an image another node has mounted does not show that node's later changes either (seen
// with --snapshot=never, even after fsfreeze); it shows the clone's lifecycle end to end.
func testRBDBulkPassReadsASnapshot(t *testing.T, s *stack) {
	src := s.volume(rbdBackend, "site-snap-block", 1<<30)
	s.bulkPassReadsSnapshot(src)
	vols, err := s.b.Controllers[rbdBackend].ListVolumes(ctxT(t), s.tenant)
	if err != nil || len(vols) != 1 {
		t.Fatalf("volumes of the tenant on RBD after the passes: %d (%v), want only the source (the clone removed)", len(vols), err)
	}
}

// testIsilonBulkPassReadsASnapshot is the same for an Isilon source: the bulk pass reads a
// OneFS snapshot over NFSv3 at <export>/.snapshot/<name> while the site (writing to the
// simulator's directory) changes the live tree.
func testIsilonBulkPassReadsASnapshot(t *testing.T, s *stack) {
	src := s.volume(isilonBackend, "site-snap-legacy", 2<<30)
	s.bulkPassReadsSnapshot(src)
	if left := s.isilonSnapshotData(src); len(left) > 0 {
		t.Fatalf("snapshot data of %s left on the array: %v", src.ID, left)
	}
}

// isilonSnapshotData lists the snapshot copies of one Isilon volume's directory on the
// simulator's disk (<root>/.snapshot/<name>/<path below /ifs>). Only this volume's: the
// other Isilon subtests run at the same time and read snapshots of their own sources.
func (s *stack) isilonSnapshotData(v *backend.Volume) []string {
	rel := strings.TrimPrefix(v.Context["exportPath"], "/ifs/")
	left, _ := filepath.Glob(filepath.Join(s.sim.Root, ".snapshot", "*", rel))
	return left
}

// siteDir is the directory the site writes its volume through (the simulator's own for
// Isilon, a node plugin staging for Ceph); stop ends the site's access.
func (s *stack) siteDir(v *backend.Volume) (dir string, stop func()) {
	if v.ID.Backend == isilonBackend {
		return s.isilonDir(v), func() {}
	}
	return s.stage(v, false)
}

func (s *stack) bulkPassReadsSnapshot(src *backend.Volume) {
	t := s.t
	ctrl := s.b.Controllers[src.ID.Backend]
	state := t.TempDir()
	// The name shipholdctl gives the snapshot of a migration with this state directory.
	snapName := (&endpoint.Env{Session: "shiphold-migrate-" + volid.Hash(state)}).SnapshotName(src.ID)
	if _, err := ctrl.CreateSnapshot(ctxT(t), src.ID, snapName, nil, nil); err != nil {
		t.Fatalf("the stale snapshot of a killed run: %v", err)
	}
	if src.ID.Backend == isilonBackend && len(s.isilonSnapshotData(src)) != 1 {
		// The check that no snapshot data is left afterwards must see this one.
		t.Fatalf("the stale snapshot's data on the array: %v, want one copy", s.isilonSnapshotData(src))
	}
	dir, unstage := s.siteDir(src)
	// NFSv3 carries no xattrs; the final pass reads live files the site just wrote (the NFS
	// server moves their atimes as it serves them).
	bulk, final := treecheck.Compare{}, treecheck.Compare{}
	if src.ID.Backend == isilonBackend {
		bulk, final = treecheck.Compare{NoXattrs: true}, treecheck.Compare{NoXattrs: true, NoAtimes: true}
	}
	spec := treecheck.Spec{SmallFiles: 300, Dirs: 10, LargeFiles: []int64{24 << 20}, SparseSize: 64 << 20, Seed: 19}
	if err := treecheck.Build(dir, spec); err != nil {
		t.Fatal(err)
	}
	unix.Sync()
	want, err := treecheck.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	q := func(rel string) string { return "'" + filepath.Join(dir, rel) + "'" }
	hook := strings.Join([]string{
		"echo changed after the snapshot > " + q(spec.SmallFile(0)),
		"rm " + q(spec.SmallFile(11)),
		"echo new > " + q("site/after-snapshot.html"),
		"mv " + q("media/large-0.bin") + " " + q("media/renamed.bin"),
		"chmod 600 " + q(spec.SmallFile(22)),
		"sync",
	}, " && ")
	args := s.args(src.ID.String(), state, "--to", cephfsBackend)
	r := s.migrateWith([]string{"SHIPHOLDCTL_TEST_AFTER_SOURCE_OPEN=" + hook}, args...)
	res := r.must(t, "bulk pass from a snapshot")
	t.Logf("bulk pass (snapshot %s): %s", snapName, summary(res))
	target := s.targetOf(res)
	s.same(target, want, bulk)
	if !strings.Contains(r.stderr, "source: snapshot "+snapName) {
		t.Fatalf("the bulk pass did not say it read snapshot %s:\n%s", snapName, tail(r.stderr, 10))
	}
	if snaps, err := ctrl.ListSnapshots(ctxT(t), &src.ID); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots of the source after the bulk pass: %v (%v), want none", snaps, err)
	}

	changed, err := treecheck.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := treecheck.Diff(want, changed, treecheck.Compare{}); len(d) < 4 {
		t.Fatalf("the hook changed too little for the test to mean anything: %v", d)
	}
	unstage() // the site stops
	r = s.migrateWith(nil, append(args, "--final")...)
	res = r.must(t, "final pass")
	if !strings.Contains(r.stderr, "source: live") {
		t.Fatalf("the final pass did not read live:\n%s", tail(r.stderr, 10))
	}
	t.Logf("final pass (live): %s", summary(res))
	s.same(target, changed, final)
	// ext4 may give the new file the removed one's inode: the engine then renames it.
	if res.Result.Removed+res.Result.Renamed < 2 || res.Result.Copied.Files < 2 {
		t.Fatalf("the final pass did not carry the changes: %s", summary(res))
	}
	// The simulator's snapshot is a copy with inode numbers of its own (see its README): the
	// final pass cannot tell a rename there, but copies again only what changed.
	if src.ID.Backend != isilonBackend && res.Result.Renamed < 1 {
		t.Fatalf("the final pass did not rename: %s", summary(res))
	}
	if res.Result.Copied.Files > 10 {
		t.Fatalf("the final pass copied %d files again, want only the few that changed: %s", res.Result.Copied.Files, summary(res))
	}
	if snaps, err := ctrl.ListSnapshots(context.Background(), &src.ID); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots left: %v (%v)", snaps, err)
	}
}
