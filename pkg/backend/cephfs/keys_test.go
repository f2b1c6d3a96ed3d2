package cephfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

// keyFiles lists the key files below dir.
func keyFiles(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, ".shiphold-key-*"))
	return files
}

// The key reaches the mount client through a 0600 file that is gone once the mount is up:
// ceph-fuse and mount.ceph read it at start.
func TestStageLeavesNoKeyAtRest(t *testing.T) {
	for _, kernel := range []bool{false, true} {
		s, fe := newFakeStager(t, kernel)
		staging := t.TempDir()
		var seen []string
		fe.Handler = func(name string, args ...string) ([]byte, error) {
			if name == "ceph-fuse" {
				seen = append(seen, checkKeyFile(t, args[len(args)-1], argAfterFlag(args, "--keyfile")))
			}
			return nil, nil
		}
		vc := map[string]string{CtxFSName: "cephfs", CtxRootPath: "/volumes/g/s/uuid"}
		if err := s.StageVolume(context.Background(), stageReq(staging, vc)); err != nil {
			t.Fatal(err)
		}
		if !kernel && len(seen) != 1 {
			t.Fatalf("ceph-fuse ran %d times", len(seen))
		}
		if kernel {
			mps, _ := s.mounter.List()
			if len(mps) != 1 || !strings.Contains(strings.Join(mps[0].Opts, ","), "secretfile="+staging) {
				t.Fatalf("kernel mount %+v", mps)
			}
		}
		if left := keyFiles(staging); len(left) != 0 {
			t.Fatalf("kernel=%v: key file %v stays in the staging path for the life of the mount", kernel, left)
		}
	}
}

func argAfterFlag(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// checkKeyFile checks, while the mount command runs, that the key file is there for it.
func checkKeyFile(t *testing.T, _ string, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file for the mount client: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "QUJD" {
		t.Fatalf("key file holds %q", b)
	}
	return path
}

// A crash between writing a key and removing it leaves a stray; unstage and repair sweep it.
func TestStrayKeysAreSwept(t *testing.T) {
	s, _ := newFakeStager(t, false)
	staging := t.TempDir()
	vc := map[string]string{CtxFSName: "cephfs", CtxRootPath: "/volumes/g/s/uuid"}
	if err := s.StageVolume(context.Background(), stageReq(staging, vc)); err != nil {
		t.Fatal(err)
	}
	stray := func() {
		if err := os.WriteFile(filepath.Join(staging, ".shiphold-key-crash1"), []byte("QUJD"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stray()
	os.MkdirAll(filepath.Join(staging, stagedDir), 0o750)
	s.Repair(context.Background(), testVol, staging, nil)
	if left := keyFiles(staging); len(left) != 0 {
		t.Fatalf("repair left %v", left)
	}
	stray()
	if err := s.UnstageVolume(context.Background(), testVol, staging); err != nil {
		t.Fatal(err)
	}
	if left := keyFiles(staging); len(left) != 0 {
		t.Fatalf("unstage left %v", left)
	}
}

// A node holds no Ceph key: a volume staged with its tenant's published identity whose
// ceph-fuse died is remounted at the next NodePublishVolume with the identity that
// request's publish context carries; without one, Repair can only say so.
func TestRepairRemountsWithThePublishedIdentity(t *testing.T) {
	s, fe := newFakeStager(t, false)
	var users []string
	fe.Handler = func(name string, args ...string) ([]byte, error) {
		if name == "ceph-fuse" {
			users = append(users, argAfterFlag(args, "--id"))
		}
		return nil, nil
	}
	staging := t.TempDir()
	pc := ceph.PublishContext(ceph.Credentials{UserID: "shiphold.fs1.t", Key: "QUJD"})
	vc := map[string]string{CtxFSName: "cephfs", CtxRootPath: "/volumes/shiphold-t/s/uuid"}
	if err := s.StageVolume(context.Background(), &backend.StageRequest{ID: testVol, StagingPath: staging, Context: vc, PublishContext: pc}); err != nil {
		t.Fatal(err)
	}
	// Its ceph-fuse died: the mount is gone from under the staging path.
	if err := s.mounter.Unmount(filepath.Join(staging, stagedDir)); err != nil {
		t.Fatal(err)
	}
	if err := s.Repair(context.Background(), testVol, staging, nil); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("repair without an identity: %v, want FailedPrecondition", err)
	}
	if err := s.Repair(context.Background(), testVol, staging, pc); err != nil {
		t.Fatalf("repair with the published identity: %v", err)
	}
	if len(users) != 2 || users[1] != "shiphold.fs1.t" {
		t.Fatalf("ceph-fuse ran as %v, want the staged identity twice", users)
	}
	other := ceph.PublishContext(ceph.Credentials{UserID: "shiphold.fs1.other", Key: "QUJD"})
	s.mounter.Unmount(filepath.Join(staging, stagedDir))
	if err := s.Repair(context.Background(), testVol, staging, other); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("repair with another user's identity: %v, want FailedPrecondition", err)
	}
}
