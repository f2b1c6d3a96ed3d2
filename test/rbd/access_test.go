package rbdtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
)

// mountOptionsOf is the option list /proc/mounts shows for path.
func mountOptionsOf(t *testing.T, path string) []string {
	t.Helper()
	mounts, _ := os.ReadFile("/proc/mounts")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[1] == path {
			return strings.Split(f[3], ",")
		}
	}
	t.Fatalf("%s is not mounted", path)
	return nil
}

// TestRBDRealReadOnlyManyRbdFuse stages a ReadOnlyMany volume: the loop device is read-only,
// the filesystem is mounted ro and writes fail; a ReadOnlyMany stage of a volume that has no
// filesystem yet is refused instead of formatting it.
func TestRBDRealReadOnlyManyRbdFuse(t *testing.T) {
	c := needCeph(t)
	needNode(t)
	ctl, _ := c.controller(t)
	ctx := ctxT(t, 2*time.Minute)
	tenant := c.uniqueTenant(t, "rox")
	dir := t.TempDir()
	d := c.plugin(t)
	mk := func(name string) tenantVolume {
		v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: name, Tenant: tenant, RequiredBytes: 32 << 20})
		if err != nil {
			t.Fatal(err)
		}
		// Whatever still holds the image goes first, or the delete fails.
		t.Cleanup(func() { sweep(t, dir, true); ctl.DeleteVolume(ctx, v.ID, nil) })
		return tenantVolume{v: v, staging: filepath.Join(dir, name, "globalmount"), owner: tenant}
	}
	unstage := func(tv tenantVolume) {
		t.Helper()
		if _, err := d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: tv.v.ID.String(), StagingTargetPath: tv.staging}); err != nil {
			t.Fatalf("unstage: %v", err)
		}
		leftovers(t, tv.staging)
	}
	tv := mk("rox-data")
	if err := nodeStage(ctx, d, tv, rwo); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tv.staging, "fs", "content"), []byte("published"), 0o644)
	syncFs(t, filepath.Join(tv.staging, "fs"))
	unstage(tv)

	if err := nodeStage(ctx, d, tv, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY); err != nil {
		t.Fatalf("ROX stage: %v", err)
	}
	opts := mountOptionsOf(t, filepath.Join(tv.staging, "fs"))
	if opts[0] != "ro" {
		t.Errorf("ROX filesystem mounted %v, want ro", opts)
	}
	loop := loopOf(t, filepath.Join(tv.staging, "rbd-fuse", tv.v.Context["imageName"]))
	if ro, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(loop), "ro")); strings.TrimSpace(string(ro)) != "1" {
		t.Errorf("ROX loop device %s is read-write", loop)
	}
	if got, err := os.ReadFile(filepath.Join(tv.staging, "fs", "content")); err != nil || string(got) != "published" {
		t.Errorf("ROX reads %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(tv.staging, "fs", "written"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to a ROX volume: %v, want EROFS", err)
	}
	unstage(tv)

	empty := mk("rox-empty")
	err := nodeStage(ctx, d, empty, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "populate") {
		t.Fatalf("ROX stage of a volume without a filesystem: %v, want FAILED_PRECONDITION saying to populate it", err)
	}
	leftovers(t, empty.staging)
}
