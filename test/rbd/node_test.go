package rbdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

// needNode requires what the rbd-fuse node path needs: root, rbd-fuse, losetup and mkfs.
func needNode(t *testing.T) {
	harness.RequireRoot(t, "staging RBD volumes (FUSE, loop devices, mount)")
	harness.RequireCommand(t, "rbd-fuse", "apt-get install rbd-fuse, or hack/install-deps.sh")
	harness.RequireCommand(t, "losetup", "apt-get install mount")
	harness.RequireCommand(t, "mkfs.ext4", "apt-get install e2fsprogs")
}

type node struct {
	t   *testing.T
	s   *rbd.Stager
	dir string
}

func (c *cluster) node(t *testing.T) *node {
	needNode(t)
	s, err := rbd.NewStager(c.backend)
	if err != nil {
		t.Fatal(err)
	}
	return &node{t: t, s: s, dir: t.TempDir()}
}

// stage stages v as ext4 and returns its mounted directory; unstaged at test end.
func (n *node) stage(ctx context.Context, v *backend.Volume) string {
	return n.stageFs(ctx, v, "ext4")
}

func (n *node) stageFs(ctx context.Context, v *backend.Volume, fsType string) string {
	n.t.Helper()
	staging := filepath.Join(n.dir, v.ID.Hash)
	req := &backend.StageRequest{ID: v.ID, StagingPath: staging, FsType: fsType, Context: v.Context}
	if err := n.s.StageVolume(ctx, req); err != nil {
		n.t.Fatalf("stage %s: %v", v.ID, err)
	}
	n.t.Cleanup(func() { n.s.UnstageVolume(context.Background(), v.ID, staging) })
	if err := n.s.StageVolume(ctx, req); err != nil {
		n.t.Fatalf("second stage %s: %v", v.ID, err)
	}
	src, block, err := n.s.PublishSource(ctx, v.ID, staging)
	if err != nil || block {
		n.t.Fatalf("publish source: %s %v %v", src, block, err)
	}
	return src
}

func (n *node) unstage(ctx context.Context, v *backend.Volume) {
	n.t.Helper()
	staging := filepath.Join(n.dir, v.ID.Hash)
	for i := 0; i < 2; i++ {
		if err := n.s.UnstageVolume(ctx, v.ID, staging); err != nil {
			n.t.Fatalf("unstage %s (%d): %v", v.ID, i, err)
		}
	}
	leftovers(n.t, staging)
}

// leftovers fails when anything of the staging path is still mounted, looped or served.
func leftovers(t *testing.T, staging string) {
	t.Helper()
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), staging) {
		t.Fatalf("still mounted below %s:\n%s", staging, mounts)
	}
	out, _ := exec.Command("losetup", "-l", "-n", "-O", "NAME,BACK-FILE").CombinedOutput()
	if strings.Contains(string(out), staging) {
		t.Fatalf("loop device left on %s: %s", staging, out)
	}
	ps, _ := exec.Command("pgrep", "-af", "rbd-fuse "+staging).CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(ps)), "\n") {
		if l != "" && !strings.Contains(l, "pgrep") {
			t.Fatalf("rbd-fuse still running: %s", l)
		}
	}
	entries, _ := os.ReadDir(staging)
	for _, e := range entries {
		t.Fatalf("left in staging path: %s", e.Name())
	}
}

func syncFs(t *testing.T, dir string) {
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
}

func TestRBDRealSnapshotCloneDataRbdFuse(t *testing.T) {
	c := needCeph(t)
	n := c.node(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "snap")
	ctx := ctxT(t, 3*time.Minute)
	mk := func(name string, req *backend.VolumeRequest) *backend.Volume {
		t.Helper()
		req.Name, req.Tenant = name, tenant
		if req.RequiredBytes == 0 {
			req.RequiredBytes = 64 << 20
		}
		var v *backend.Volume
		err := whilePending(func() (err error) { v, err = ctl.CreateVolume(ctx, req); return err })
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		t.Cleanup(func() { ctl.DeleteVolume(context.Background(), v.ID, nil) })
		return v
	}
	src := mk("src", &backend.VolumeRequest{})
	dir := n.stage(ctx, src)
	data := bytes.Repeat([]byte("shiphold "), 1000)
	if err := os.WriteFile(filepath.Join(dir, "file"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	syncFs(t, dir)

	snap, err := ctl.CreateSnapshot(ctx, src.ID, "snap-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Ready || snap.SizeBytes != 64<<20 || time.Since(snap.CreatedAt) > time.Minute {
		t.Fatalf("snapshot %+v", snap)
	}
	if again, err := ctl.CreateSnapshot(ctx, src.ID, "snap-1", nil, nil); err != nil || again.ID != snap.ID || !again.CreatedAt.Equal(snap.CreatedAt) {
		t.Fatalf("snapshot retry: %+v %v", again, err)
	}
	other := mk("other", &backend.VolumeRequest{RequiredBytes: 8 << 20})
	if _, err := ctl.CreateSnapshot(ctx, other.ID, "snap-1", nil, nil); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("same snapshot name on another volume: %v, want AlreadyExists", err)
	}
	if got, err := ctl.GetSnapshot(ctx, snap.ID); err != nil || got.ID != snap.ID {
		t.Fatalf("GetSnapshot: %+v %v", got, err)
	}
	if list, err := ctl.ListSnapshots(ctx, &src.ID); err != nil || len(list) != 1 {
		t.Fatalf("ListSnapshots: %+v %v", list, err)
	}
	if err := ctl.DeleteVolume(ctx, src.ID, nil); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("delete volume with snapshot: %v, want FailedPrecondition", err)
	}
	// Written after the snapshot: must not show in the clone.
	os.WriteFile(filepath.Join(dir, "late"), []byte("late"), 0o644)
	syncFs(t, dir)

	fromSnap := mk("from-snap", &backend.VolumeRequest{RequiredBytes: 128 << 20, SourceSnapshot: &snap.ID})
	if fromSnap.CapacityBytes != 128<<20 || fromSnap.SourceSnapshot == nil {
		t.Fatalf("clone %+v", fromSnap)
	}
	cdir := n.stage(ctx, fromSnap)
	if got, err := os.ReadFile(filepath.Join(cdir, "file")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clone from snapshot reads %d bytes, %v", len(got), err)
	}
	if _, err := os.Stat(filepath.Join(cdir, "late")); err == nil {
		t.Fatal("clone from snapshot shows a file written after the snapshot")
	}

	fromVol := mk("from-vol", &backend.VolumeRequest{SourceVolume: &src.ID})
	vdir := n.stage(ctx, fromVol)
	if got, err := os.ReadFile(filepath.Join(vdir, "late")); err != nil || string(got) != "late" {
		t.Fatalf("clone from volume: %q %v", got, err)
	}
	if info := c.rbdCLI(t, "info", "rbd/"+tenant+"/"+fromVol.Context["imageName"]); strings.Contains(info, "parent:") {
		t.Fatalf("clone from volume is not flattened:\n%s", info)
	}
	if snaps := c.rbdCLI(t, "snap", "ls", "rbd/"+tenant+"/"+src.Context["imageName"]); strings.Contains(snaps, "csi-tmp-") {
		t.Fatalf("temporary snapshot left on the source:\n%s", snaps)
	}

	// Deleting the snapshot flattens its clone, which keeps its data.
	if err := whilePending(func() error { return ctl.DeleteSnapshot(ctx, snap.ID, nil) }); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteSnapshot(ctx, snap.ID, nil); err != nil {
		t.Fatalf("second DeleteSnapshot: %v", err)
	}
	if _, err := ctl.GetSnapshot(ctx, snap.ID); !backend.IsNotFound(err) {
		t.Fatalf("GetSnapshot after delete: %v", err)
	}
	if info := c.rbdCLI(t, "info", "rbd/"+tenant+"/"+fromSnap.Context["imageName"]); strings.Contains(info, "parent:") {
		t.Fatalf("clone still has a parent after its snapshot was deleted:\n%s", info)
	}
	n.unstage(ctx, fromSnap)
	cdir = n.stage(ctx, fromSnap)
	if got, err := os.ReadFile(filepath.Join(cdir, "file")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("flattened clone reads %d bytes, %v", len(got), err)
	}

	for _, v := range []*backend.Volume{src, fromSnap, fromVol} {
		n.unstage(ctx, v)
	}
	for _, v := range []*backend.Volume{src, fromSnap, fromVol, other} {
		if err := ctl.DeleteVolume(ctx, v.ID, nil); err != nil {
			t.Fatalf("delete %s: %v", v.ID, err)
		}
	}
	if ls := strings.TrimSpace(c.rbdCLI(t, "ls", "rbd/"+tenant)); ls != "" {
		t.Fatalf("images left: %s", ls)
	}
}

// TestRBDRealExpandRbdFuse grows a staged xfs volume (xfs_growfs needs only CAP_SYS_ADMIN) and
// an ext4 one (online resize2fs needs CAP_SYS_RESOURCE, which some test sandboxes drop).
func TestRBDRealExpandRbdFuse(t *testing.T) {
	c := needCeph(t)
	n := c.node(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "exp")
	ctx := ctxT(t, 2*time.Minute)
	for _, tc := range []struct {
		fsType   string
		from, to int64
	}{{"xfs", 320 << 20, 512 << 20}, {"ext4", 64 << 20, 256 << 20}} {
		v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "exp-" + tc.fsType, Tenant: tenant, RequiredBytes: tc.from,
			Parameters: map[string]string{backend.ParamFsType: tc.fsType}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ctl.DeleteVolume(context.Background(), v.ID, nil) })
		dir := n.stageFs(ctx, v, tc.fsType)
		os.WriteFile(filepath.Join(dir, "file"), []byte("kept"), 0o644)
		before := fsSize(t, dir)
		size, nodeExpand, err := ctl.ExpandVolume(ctx, v.ID, tc.to, 0, nil)
		if err != nil || size != tc.to || !nodeExpand {
			t.Fatalf("%s controller expand: %d %v %v", tc.fsType, size, nodeExpand, err)
		}
		got, err := n.s.ExpandVolume(ctx, v.ID, filepath.Join(n.dir, v.ID.Hash), tc.to)
		if tc.fsType == "ext4" && err != nil && strings.Contains(err.Error(), "CAP_SYS_RESOURCE") && !hasCapSysResource() {
			t.Logf("ext4 online growth refused without CAP_SYS_RESOURCE, as reported: %v", err)
			n.unstage(ctx, v)
			continue
		}
		if err != nil || got != tc.to {
			t.Fatalf("%s node expand: %d %v", tc.fsType, got, err)
		}
		if after := fsSize(t, dir); after < before+(tc.to-tc.from)*3/4 {
			t.Fatalf("%s grew from %d to %d bytes only", tc.fsType, before, after)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "file")); string(b) != "kept" {
			t.Fatalf("%s: data changed by expand", tc.fsType)
		}
		n.unstage(ctx, v)
	}
}

func hasCapSysResource() bool {
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(l, "CapEff:"); ok {
			var caps uint64
			fmt.Sscanf(strings.TrimSpace(hex), "%x", &caps)
			return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

func fsSize(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func TestRBDRealBlockStageRbdFuse(t *testing.T) {
	c := needCeph(t)
	n := c.node(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "blk")
	ctx := ctxT(t, time.Minute)
	v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "blk", Tenant: tenant, RequiredBytes: 16 << 20, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.DeleteVolume(context.Background(), v.ID, nil)
	staging := filepath.Join(n.dir, "blk")
	req := &backend.StageRequest{ID: v.ID, StagingPath: staging, Block: true, Context: v.Context}
	if err := n.s.StageVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.s.UnstageVolume(context.Background(), v.ID, staging) })
	dev, block, err := n.s.PublishSource(ctx, v.ID, staging)
	if err != nil || !block || !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("publish source %s %v %v", dev, block, err)
	}
	if err := n.s.Repair(ctx, v.ID, staging, nil); err != nil {
		t.Fatalf("repair of a healthy volume: %v", err)
	}
	// A block volume still asks for node expansion: the loop device over rbd-fuse keeps its
	// size until NodeExpandVolume refreshes it (TestRBDRealExpandBlockNeedsTheNode).
	if _, nodeExpand, err := ctl.ExpandVolume(ctx, v.ID, 32<<20, 0, nil); err != nil || !nodeExpand {
		t.Fatalf("expand block: node=%v %v, want node expansion", nodeExpand, err)
	}
	if size, err := n.s.ExpandVolume(ctx, v.ID, staging, 32<<20); err != nil || size != 32<<20 {
		t.Fatalf("node expand block: %d %v", size, err)
	}
	if err := n.s.UnstageVolume(ctx, v.ID, staging); err != nil {
		t.Fatal(err)
	}
	leftovers(t, staging)
	_ = volid.Volume{}
}
