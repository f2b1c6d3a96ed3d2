package adopttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/adopt"
	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// foreignImage imports into the pool's default namespace (where ceph-csi and hand-made
// PVs keep theirs) an ext4 image holding index.html, made without shiphold.
func foreignImage(t *testing.T, name, features string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "index.html"), []byte("rbd site"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	run(t, "truncate", "-s", "32M", img)
	run(t, "mkfs.ext4", "-q", "-d", src, img)
	run(t, "rbd", "import", "--no-progress", "--image-feature", features, img, "rbd/"+name)
	t.Cleanup(func() { exec.Command("rbd", "rm", "--no-progress", "rbd/"+name).Run() })
}

// TestAdoptRBDImage: an image in the default namespace with a filesystem and data is
// adopted; the plugin maps, mounts and publishes it, the data reads back, it grows through
// controller and node, takes a snapshot, and is deleted (a PV with the Delete policy). An
// image with a feature the kernel client cannot map is refused.
func TestAdoptRBDImage(t *testing.T) {
	harness.RequireRoot(t, "staging RBD volumes (FUSE, loop devices, mount)")
	harness.RequireCommand(t, "rbd-fuse", "apt-get install rbd-fuse, or hack/install-deps.sh")
	harness.RequireCommand(t, "rbd", "apt-get install ceph-common, or hack/install-deps.sh")
	harness.RequireCommand(t, "mkfs.ext4", "apt-get install e2fsprogs")
	be := harness.RBDBackend(t, "rbd1")
	cfg := &config.Config{Backends: []config.Backend{be}}
	shop := "shop-" + suffix() // a tenant of its own: the quota counts nothing else
	withQuota(cfg, shop)
	name := "legacy-" + suffix()
	foreignImage(t, name, "layering")

	journaled := "legacy-j-" + suffix()
	run(t, "rbd", "create", "--size", "8M", "--image-feature", "layering,exclusive-lock,journaling", "rbd/"+journaled)
	t.Cleanup(func() { exec.Command("rbd", "rm", "--no-progress", "rbd/"+journaled).Run() })
	_, err := adoptOn(t, cfg, adopt.Request{Backend: "rbd1", AdoptRequest: backend.AdoptRequest{Object: "rbd//" + journaled, Tenant: shop, Name: "pv-j"}})
	if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), "journaling") {
		t.Fatalf("adoption of an image with journaling under mounter auto: %v, want FailedPrecondition naming the feature", err)
	}

	v, err := adoptOn(t, cfg, adopt.Request{Backend: "rbd1", AdoptRequest: backend.AdoptRequest{Object: "rbd//" + name, Tenant: shop, Name: "pv-legacy"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.ID.String(), "a1:rbd1:"+shop+":") || !strings.HasSuffix(v.ID.String(), ":/"+name) || v.CapacityBytes != 32<<20 {
		t.Fatalf("adopted %s of %d bytes, want the image kept by name at 32 MiB", v.ID, v.CapacityBytes)
	}
	d := harness.StartDriver(t, cfg, driver.ModeAll)
	counted(t, cfg, d, v, 32<<20)
	a := attach(t, d, v, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "ext4"))
	a.readBack(t, "index.html", "rbd site")
	if got := a.expand(t, 64<<20); got != 64<<20 {
		t.Fatalf("expanded to %d bytes, want 64 MiB", got)
	}
	counted(t, cfg, d, v, 64<<20)
	if info := run(t, "rbd", "info", "rbd/"+name); !strings.Contains(info, "size 64 MiB") {
		t.Fatalf("the image after expansion:\n%s", info)
	}
	a.snapshot(t)
	a.detach(t)

	if _, err := d.Controller().DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: v.ID.String()}); err != nil {
		t.Fatal(err)
	}
	unlisted(t, d, v.ID.String())
	if ls := run(t, "rbd", "ls", "rbd"); strings.Contains(ls, name+"\n") || strings.HasSuffix(ls, name) {
		t.Fatalf("image %s still listed after DeleteVolume:\n%s", name, ls)
	}
}
