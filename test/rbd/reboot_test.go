package rbdtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
)

// plugin starts a node plugin as a restart would: a new driver over a new stager, with
// nothing in memory from before.
func (c *cluster) plugin(t *testing.T) *driver.Driver {
	t.Helper()
	s, err := rbd.NewStager(c.backend)
	if err != nil {
		t.Fatal(err)
	}
	d, err := driver.Compose(driver.ModeNode, driver.Options{Kinds: registry.Kinds(), Name: "shiphold.test", Version: "test", NodeName: "node-1", NodeAddress: "127.0.0.1",
		Config: &config.Config{Backends: []config.Backend{*c.backend}}, Stagers: map[string]backend.Stager{c.backend.Name: s}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fsCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

const rwo = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER

// tenantVolume is one tenant's volume on the node: where it is staged and what it holds.
type tenantVolume struct {
	v       *backend.Volume
	staging string
	owner   string
}

func nodeStage(ctx context.Context, d *driver.Driver, tv tenantVolume, mode csi.VolumeCapability_AccessMode_Mode) error {
	_, err := d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: tv.v.ID.String(), StagingTargetPath: tv.staging,
		VolumeCapability: fsCap(mode), VolumeContext: tv.v.Context})
	return err
}

// loopOf is the loop device whose back-file is file, "" when none is.
func loopOf(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[1] == file {
			return f[0]
		}
	}
	return ""
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// sweep takes down, behind any plugin's back, every mount, loop device and rbd-fuse below
// dir: what a reboot does, and the cleanup when a test fails half way.
func sweep(t *testing.T, dir string, fuseToo bool) {
	mounts, _ := os.ReadFile("/proc/mounts")
	var fuse []string
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || !strings.HasPrefix(f[1], dir+"/") {
			continue
		}
		if strings.HasPrefix(f[2], "fuse") {
			fuse = append(fuse, f[1])
			continue
		}
		exec.Command("umount", f[1]).Run()
	}
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[1], dir+"/") {
			exec.Command("losetup", "--detach", f[0]).Run()
		}
	}
	if !fuseToo {
		return
	}
	for _, m := range fuse {
		exec.Command("fusermount", "-u", m).Run()
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ps, _ := exec.Command("pgrep", "-f", "rbd-fuse "+dir).Output(); len(strings.TrimSpace(string(ps))) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("rbd-fuse below %s did not exit", dir)
}

// checkComesBack stages tv with a restarted plugin: it must come back as itself (its
// tenant's data, unformatted) or fail loudly, never show another tenant's volume.
func checkComesBack(t *testing.T, ctx context.Context, d *driver.Driver, tv tenantVolume, others []tenantVolume) bool {
	t.Helper()
	err := nodeStage(ctx, d, tv, rwo)
	if err != nil {
		if c := status.Code(err); c == codes.OK || c == codes.Unknown {
			t.Fatalf("%s: stage failed without a code: %v", tv.owner, err)
		}
		t.Logf("%s: stage failed loudly: %v", tv.owner, err)
		return false
	}
	got, err := os.ReadFile(filepath.Join(tv.staging, "fs", "owner"))
	for _, o := range others {
		if o.owner != tv.owner && string(got) == o.owner {
			t.Fatalf("%s's staging path shows %s's volume", tv.owner, o.owner)
		}
	}
	if err != nil || string(got) != tv.owner {
		t.Fatalf("%s's volume reads %q (%v): it was formatted or is not itself", tv.owner, got, err)
	}
	return true
}

// TestRBDRealRebootInSpiritRbdFuse stages two tenants' volumes, then pulls the node out from
// under the plugin as a restart or reboot would, renumbers the loop devices, restarts the
// plugin and stages again: every volume must come back as itself or fail loudly, never as
// the other tenant's, never formatted, and no unrelated device may be touched.
func TestRBDRealRebootInSpiritRbdFuse(t *testing.T) {
	c := needCeph(t)
	needNode(t)
	ctl, _ := c.controller(t)
	ctx := ctxT(t, 4*time.Minute)
	dir := t.TempDir()
	var vols []tenantVolume
	for _, name := range []string{"a", "b"} {
		tenant := c.uniqueTenant(t, "reboot"+name)
		v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-" + name, Tenant: tenant, RequiredBytes: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		// Whatever still holds the image goes first, or the delete fails.
		t.Cleanup(func() { sweep(t, dir, true); ctl.DeleteVolume(context.Background(), v.ID, nil) })
		vols = append(vols, tenantVolume{v: v, staging: filepath.Join(dir, name, "globalmount"), owner: "tenant " + tenant})
	}
	a, b := vols[0], vols[1]
	first := c.plugin(t)
	for _, tv := range vols {
		if err := nodeStage(ctx, first, tv, rwo); err != nil {
			t.Fatalf("stage %s: %v", tv.owner, err)
		}
		if err := os.WriteFile(filepath.Join(tv.staging, "fs", "owner"), []byte(tv.owner), 0o644); err != nil {
			t.Fatal(err)
		}
		syncFs(t, filepath.Join(tv.staging, "fs"))
	}
	fileOf := func(tv tenantVolume) string {
		return filepath.Join(tv.staging, "rbd-fuse", tv.v.Context["imageName"])
	}
	loopA, loopB := loopOf(t, fileOf(a)), loopOf(t, fileOf(b))
	t.Logf("staged: %s on %s, %s on %s", a.owner, loopA, b.owner, loopB)

	// A plugin restart while an admin's cleanup unmounted the filesystems and detached the
	// loop devices, then put them back in the other order: each number now serves the
	// other tenant's image; the rbd-fuse daemons still run.
	sweep(t, dir, false)
	run(t, "losetup", loopA, fileOf(b))
	run(t, "losetup", loopB, fileOf(a))
	second := c.plugin(t)
	for _, tv := range vols {
		checkComesBack(t, ctx, second, tv, vols)
	}

	// A reboot: nothing attached, no daemon, an unrelated loop device takes the first
	// number; the restarted plugin stages in the other order.
	sweep(t, dir, true)
	unrelatedFile := filepath.Join(t.TempDir(), "unrelated.img")
	if err := os.WriteFile(unrelatedFile, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", unrelatedFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	unrelated := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "--detach", unrelated).Run() })
	third := c.plugin(t)
	for _, tv := range []tenantVolume{b, a} {
		checkComesBack(t, ctx, third, tv, vols)
	}
	if got := loopOf(t, unrelatedFile); got != unrelated {
		t.Fatalf("the unrelated loop device %s was detached (now %q)", unrelated, got)
	}
	for _, tv := range vols {
		if _, err := third.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: tv.v.ID.String(), StagingTargetPath: tv.staging}); err != nil {
			t.Fatalf("unstage %s: %v", tv.owner, err)
		}
		leftovers(t, tv.staging)
	}
}
