package rbd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/volid"
)

func testBackend(mounterName string) *config.Backend {
	return &config.Backend{Name: "ceph", Kind: backend.KindRBD, Section: &Config{
		Cluster: ceph.Cluster{ClusterID: "c", Monitors: []string{"10.0.0.1:6789"}},
		Pool:    "rbd", Mounter: mounterName,
	}}
}

func TestStrategySelection(t *testing.T) {
	testCases := []struct {
		name     string
		want     string
		sys      []string // present below /sys
		modprobe map[string]bool
		expect   string
	}{
		{name: "explicit wins", want: "rbd-nbd", sys: []string{"bus/rbd"}, expect: "rbd-nbd"},
		{name: "krbd present", want: "auto", sys: []string{"bus/rbd", "module/nbd"}, expect: "krbd"},
		{name: "nbd present", want: "auto", sys: []string{"module/nbd"}, expect: "rbd-nbd"},
		{name: "nothing: fuse", want: "auto", expect: "rbd-fuse"},
		{name: "empty means config default auto", want: "", sys: []string{"module/nbd"}, expect: "rbd-nbd"},
		{name: "modprobe rbd that loads", want: "auto", modprobe: map[string]bool{"rbd": true}, expect: "krbd"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			sys := t.TempDir()
			for _, p := range tc.sys {
				os.MkdirAll(filepath.Join(sys, p), 0o755)
			}
			m, _, fe := mounter.NewFake()
			fe.Handler = func(name string, args ...string) ([]byte, error) {
				if name == "modprobe" {
					if tc.modprobe[args[0]] {
						dir := map[string]string{"rbd": "bus/rbd", "nbd": "module/nbd"}[args[0]]
						os.MkdirAll(filepath.Join(sys, dir), 0o755)
						return nil, nil
					}
					return []byte("modprobe: FATAL: Module not found"), errors.New("exit status 1")
				}
				return nil, nil
			}
			s, err := newStager(testBackend(""), m, t.TempDir(), sys)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.strategy(context.Background(), tc.want); got != tc.expect {
				t.Fatalf("strategy(%q) = %s, want %s", tc.want, got, tc.expect)
			}
		})
	}
}

// fuseNode fakes a node where rbd-fuse "mounts" by creating the image file and starting a
// daemon, and losetup hands out loop devices.
func fuseNode(t *testing.T) (*Stager, *mounter.FakeExec, string) {
	t.Helper()
	k := newFakeKernel(t)
	return k.stager(MounterFuse), k.fe, t.TempDir()
}

func TestStageUnstageRecord(t *testing.T) {
	s, fe, staging := fuseNode(t)
	ctx := context.Background()
	id := volid.Volume{Backend: "ceph", Tenant: "team-a", Location: "2", Hash: volid.Hash("pvc")}
	req := &backend.StageRequest{ID: id, StagingPath: staging, FsType: "ext4",
		Context: map[string]string{CtxPool: "rbd", CtxNamespace: "team-a", CtxImage: imageName(id.Hash), CtxMounter: "rbd-fuse"},
		Secrets: map[string]string{"userID": "u", "userKey": "SECRETKEY"}}
	if err := s.StageVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	rec, err := readRecord(staging)
	if err != nil || rec == nil {
		t.Fatalf("record: %+v %v", rec, err)
	}
	if rec.Strategy != "rbd-fuse" || rec.Device != "/dev/loop0" || rec.BootID != testBoot || rec.FuseMount != filepath.Join(staging, "rbd-fuse") || rec.Image.Namespace != "team-a" || rec.FsType != "ext4" {
		t.Fatalf("record %+v", rec)
	}
	if mounted, _ := s.m.IsMounted(fsPath(staging)); !mounted {
		t.Fatal("filesystem not mounted at <staging>/fs")
	}
	var fuseCmd string
	for _, c := range fe.Commands() {
		if strings.Contains(c, "SECRETKEY") {
			t.Fatalf("secret on a command line: %s", c)
		}
		if strings.HasPrefix(c, "rbd-fuse ") {
			fuseCmd = c
		}
	}
	for _, want := range []string{"-m 10.0.0.1:6789", "--id u", "--keyfile ", "-p rbd", "--namespace=team-a", "-r " + imageName(id.Hash)} {
		if !strings.Contains(fuseCmd, want) {
			t.Fatalf("rbd-fuse command %q lacks %q", fuseCmd, want)
		}
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 3 { // record, rbd-fuse, fs; no key file
		t.Fatalf("staging holds %v", entries)
	}
	// A second stage finds record and mount and runs nothing new.
	n := len(fe.Commands())
	if err := s.StageVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if cmds := fe.Commands()[n:]; len(cmds) != 0 {
		t.Fatalf("second stage ran %v", cmds)
	}
	if src, block, err := s.PublishSource(ctx, id, staging); err != nil || block || src != fsPath(staging) {
		t.Fatalf("publish source %s %v %v", src, block, err)
	}
	if size, err := s.ExpandVolume(ctx, id, staging, 1<<20); err != nil || size != 1<<20 {
		t.Fatalf("expand %d %v", size, err)
	}
	if _, err := s.ExpandVolume(ctx, id, staging, 2<<20); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("expand past the device: %v", err)
	}
	other := id
	other.Hash = volid.Hash("other")
	if err := s.UnstageVolume(ctx, other, staging); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("unstage of another volume: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.UnstageVolume(ctx, id, staging); err != nil {
			t.Fatalf("unstage %d: %v", i, err)
		}
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Fatalf("staging not empty after unstage: %v", entries)
	}
	if !strings.Contains(strings.Join(fe.Commands(), "\n"), "losetup --detach /dev/loop0") {
		t.Fatalf("loop device not detached: %v", fe.Commands())
	}
	if _, _, err := s.PublishSource(ctx, id, staging); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("publish source after unstage: %v", err)
	}
}

func TestStageBlockAndMissingSecret(t *testing.T) {
	s, _, staging := fuseNode(t)
	ctx := context.Background()
	id := volid.Volume{Backend: "ceph", Tenant: "t", Location: "2", Hash: volid.Hash("b")}
	req := &backend.StageRequest{ID: id, StagingPath: staging, Block: true, Context: map[string]string{}}
	err := s.StageVolume(ctx, req)
	if backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("no credentials: %v", err)
	}
	req.Secrets = map[string]string{"userID": "u"}
	if err := s.StageVolume(ctx, req); backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "userKey") {
		t.Fatalf("missing userKey: %v", err)
	}
	req.Secrets = map[string]string{"userID": "u", "userKey": "K"}
	if err := s.StageVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if src, block, err := s.PublishSource(ctx, id, staging); err != nil || !block || src != "/dev/loop0" {
		t.Fatalf("block source %s %v %v", src, block, err)
	}
	fsReq := *req
	fsReq.Block = false
	if err := s.StageVolume(ctx, &fsReq); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("restage as filesystem: %v", err)
	}
	if err := s.UnstageVolume(ctx, id, staging); err != nil {
		t.Fatal(err)
	}
}

func TestRepairReportsDeadFuse(t *testing.T) {
	s, _, staging := fuseNode(t)
	ctx := context.Background()
	id := volid.Volume{Backend: "ceph", Tenant: "t", Location: "2", Hash: volid.Hash("r")}
	if err := s.Repair(ctx, id, staging, nil); err != nil {
		t.Fatalf("repair of an unstaged volume: %v", err)
	}
	rec := &attachRecord{Volume: id.String(), Strategy: MounterFuse, attachment: attachment{Device: "/dev/loop7", FuseMount: filepath.Join(staging, "rbd-fuse"), FusePID: 999999}}
	if err := writeRecord(staging, rec); err != nil {
		t.Fatal(err)
	}
	err := s.Repair(ctx, id, staging, nil)
	if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), "has exited") {
		t.Fatalf("repair of a dead rbd-fuse: %v", err)
	}
}

func TestKRBDAttachCommand(t *testing.T) {
	m, _, fe := mounter.NewFake()
	fe.Handler = func(name string, args ...string) ([]byte, error) { return []byte("/dev/rbd3\n"), nil }
	a := newKRBDAttacher(testBackend("").Section.(*Config).Cluster, m, t.TempDir())
	at, err := a.Attach(context.Background(), imageSpec{Pool: "rbd", Namespace: "t", Image: "csi-vol-x"}, t.TempDir(), credsForTest(), attachOptions{})
	if err != nil || at.Device != "/dev/rbd3" {
		t.Fatalf("attach %+v %v", at, err)
	}
	cmd := fe.Commands()[0]
	if !strings.HasPrefix(cmd, "rbd map rbd/t/csi-vol-x -m 10.0.0.1:6789 --id u --keyfile ") {
		t.Fatalf("map command %q", cmd)
	}
}

// TestFreshImageFormatsWithoutZeroing: a new image reads zeros where never written, so the
// first stage's mkfs neither discards the device nor zeroes the inode tables and the
// journal (on rbd-fuse 20 parallel mkfs.ext4 spent seconds writing journals of zeros).
func TestFreshImageFormatsWithoutZeroing(t *testing.T) {
	for fs, want := range map[string]string{
		"ext4": "mkfs.ext4 -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 -F -m0 /dev/loop0",
		"xfs":  "mkfs.xfs -K -f /dev/loop0",
	} {
		t.Run(fs, func(t *testing.T) {
			s, fe, staging := fuseNode(t)
			id := volid.Volume{Backend: "ceph", Tenant: "team-a", Location: "2", Hash: volid.Hash("pvc-" + fs)}
			req := &backend.StageRequest{ID: id, StagingPath: staging, FsType: fs,
				Context: map[string]string{CtxPool: "rbd", CtxNamespace: "team-a", CtxImage: imageName(id.Hash), CtxMounter: "rbd-fuse"},
				Secrets: map[string]string{"userID": "u", "userKey": "K"}}
			if err := s.StageVolume(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			var mkfs []string
			for _, c := range fe.Commands() {
				if strings.HasPrefix(c, "mkfs") {
					mkfs = append(mkfs, c)
				}
			}
			if len(mkfs) != 1 || mkfs[0] != want {
				t.Fatalf("mkfs commands %q, want [%q]", mkfs, want)
			}
		})
	}
}
