package adopttest

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/adopt"
	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// writeCephFS writes one file into the filesystem through libcephfs, as a legacy client.
func writeCephFS(t *testing.T, path, content string) {
	t.Helper()
	putFile(t, legacyClient(t), path, content)
}

// TestAdoptCephFSSubvolume: a subvolume another driver made (ceph-csi's group "csi") with a
// quota and data is adopted where it is; the plugin mounts (ceph-fuse) and publishes it, the
// data reads back, it grows and takes a snapshot. Its PV keeps the Retain policy, so nothing
// deletes it: after the pod is gone the subvolume and its data are still there. Its data
// directory cannot be adopted as a plain directory (cephfsdir_test.go adopts one).
func TestAdoptCephFSSubvolume(t *testing.T) {
	harness.RequireRoot(t, "mounting CephFS")
	harness.RequireCommand(t, "ceph-fuse", "apt-get install ceph-fuse, or hack/install-deps.sh")
	be := harness.CephFSBackend(t, "fs1")
	cfg := &config.Config{Backends: []config.Backend{be}}
	shop := "shop-" + suffix() // a tenant of its own: the quota counts nothing else
	withQuota(cfg, shop)
	group, sub := "csi-"+suffix(), "csi-vol-legacy"
	run(t, "ceph", "fs", "subvolumegroup", "create", "cephfs", group)
	t.Cleanup(func() {
		exec.Command("ceph", "fs", "subvolume", "rm", "cephfs", sub, "--group_name", group).Run()
		exec.Command("ceph", "fs", "subvolumegroup", "rm", "cephfs", group).Run()
	})
	run(t, "ceph", "fs", "subvolume", "create", "cephfs", sub, "--group_name", group, "--size", "33554432")
	path := run(t, "ceph", "fs", "subvolume", "getpath", "cephfs", sub, "--group_name", group)
	writeCephFS(t, path+"/index.html", "cephfs site")

	for _, object := range []string{path, "cephfs:" + path} {
		if _, err := adoptOn(t, cfg, adopt.Request{Backend: "fs1", AdoptRequest: backend.AdoptRequest{Object: object, Tenant: shop, Name: "pv-dir"}}); backend.CodeOf(err) != backend.InvalidArgument {
			t.Fatalf("adoption of %s, a directory inside a subvolume: %v, want InvalidArgument", object, err)
		}
	}
	v, err := adoptOn(t, cfg, adopt.Request{Backend: "fs1", AdoptRequest: backend.AdoptRequest{Object: "cephfs/" + group + "/" + sub, Tenant: shop, Name: "pv-legacy"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(v.ID.String(), ":"+group+"/"+sub) || v.CapacityBytes != 32<<20 {
		t.Fatalf("adopted %s of %d bytes, want the subvolume kept by name with its 32 MiB quota", v.ID, v.CapacityBytes)
	}
	d := harness.StartDriver(t, cfg, driver.ModeAll)
	counted(t, cfg, d, v, 32<<20)
	a := attach(t, d, v, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, ""))
	a.readBack(t, "index.html", "cephfs site")
	if got := a.expand(t, 64<<20); got != 64<<20 {
		t.Fatalf("expanded to %d bytes, want 64 MiB", got)
	}
	counted(t, cfg, d, v, 64<<20)
	if info := run(t, "ceph", "fs", "subvolume", "info", "cephfs", sub, "--group_name", group); !strings.Contains(info, `"bytes_quota": 67108864`) {
		t.Fatalf("the subvolume after expansion:\n%s", info)
	}
	a.snapshot(t)
	a.detach(t)
	// Retain: no DeleteVolume comes; the data stays where it was.
	if got := run(t, "ceph", "fs", "subvolume", "getpath", "cephfs", sub, "--group_name", group); got != path {
		t.Fatalf("subvolume path after detach: %q, want %q", got, path)
	}
}
