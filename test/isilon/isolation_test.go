package isilontest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/onefssim"
)

// Ports for the isolation test's ganesha, apart from the other NFS tests'.
const (
	isoNFSPort = "12289"
	isoMntPort = "12288"
)

func isoURL(p, query string) string {
	return fmt.Sprintf("nfs://127.0.0.1%s?nfsport=%s&mountport=%s&version=3%s", p, isoNFSPort, isoMntPort, query)
}

// ownerOverNFS writes a file through the export as root on the client (libnfs sends the
// process's uid, 0 here) and returns the uid the file got on the array.
func ownerOverNFS(t *testing.T, realRoot, exportPath, name string) uint32 {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, []byte("written by root on the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) { // ganesha reloads asynchronously
		if out, err = exec.Command("nfs-cp", src, isoURL(exportPath+"/"+name, "")).CombinedOutput(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("root on a published node cannot write %s through the export: %v: %s", exportPath, err, out)
	}
	fi, err := os.Stat(filepath.Join(realRoot, strings.TrimPrefix(exportPath, "/ifs/"), name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

// TestIsilonTenantIsolationOverNFS (issue 13): on a StorageClass that does not ask for
// root, root on a published node is squashed to nobody, even where the access zone's
// default export settings map root to root (an admin's choice the driver must not
// inherit); a class with rootClientEnabled keeps root. And the tenant directory keeps
// other exports' clients out: through an export above it (a site's legacy export of the
// whole tree), a non-root client cannot list the tenant's volumes, so it cannot find their
// directories. (A probe of a volume's own path would mount that volume's export, which this
// host is a client of: it shows nothing about the tenant.)
func TestIsilonTenantIsolationOverNFS(t *testing.T) {
	_, errG := exec.LookPath("ganesha.nfsd")
	_, errC := exec.LookPath("nfs-cp")
	harness.Require(t, "root, nfs-ganesha and libnfs-utils", os.Geteuid() == 0 && errG == nil && errC == nil,
		"run as root; apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils")
	nfsDir := t.TempDir()
	run := func(args ...string) {
		cmd := exec.Command("../../hack/nfs-server.sh", append(args, nfsDir)...)
		cmd.Env = append(os.Environ(), "NFS_PORT="+isoNFSPort, "MNT_PORT="+isoMntPort)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nfs-server.sh %v: %v\n%s", args, err, out)
		}
	}
	run("start")
	t.Cleanup(func() { run("stop") })
	sim := harness.StartOneFSWith(t, func(o *onefssim.Options) {
		o.Ganesha = &onefssim.GaneshaOptions{ExportsFile: filepath.Join(nfsDir, "exports.conf"), PidFile: filepath.Join(nfsDir, "ganesha.pid")}
	})
	if err := os.Chmod(sim.Root, 0o755); err != nil { // t.TempDir is 0700
		t.Fatal(err)
	}
	f := &fixture{sim: sim}
	// The zone's default: root is root. A driver export that says nothing inherits it.
	if st, body := rawPUT(t, f, "/platform/2/protocols/nfs/settings/export?zone=System", `{"map_root":{"enabled":false}}`); st != 204 {
		t.Fatalf("zone export settings: %d %s", st, body)
	}
	be := sim.Backend(t, "isilon-iso")
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	ctrl := d.Controller()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vcap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	publish := func(name string, params map[string]string) string {
		t.Helper()
		params["backend"], params["csi.storage.k8s.io/pvc/namespace"] = be.Name, "shop"
		vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{vcap}, Parameters: params})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctrl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vol.Volume.VolumeId})
		})
		if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol.Volume.VolumeId,
			NodeId: "node-1@127.0.0.1", VolumeCapability: vcap, VolumeContext: vol.Volume.VolumeContext}); err != nil {
			t.Fatal(err)
		}
		return vol.Volume.VolumeContext["exportPath"]
	}
	squashed := publish("pvc-default", map[string]string{})
	rooted := publish("pvc-root", map[string]string{"rootClientEnabled": "true"})

	if uid := ownerOverNFS(t, sim.Root, squashed, "by-root.txt"); uid != 65534 {
		t.Errorf("default class: a file root wrote over NFS is owned by uid %d on the array, want 65534 (nobody: root squashed)", uid)
	}
	if uid := ownerOverNFS(t, sim.Root, rooted, "by-root.txt"); uid != 0 {
		t.Errorf("class with rootClientEnabled=true: root's file is owned by uid %d, want 0", uid)
	}

	tenantDir := filepath.Dir(squashed)
	fi, err := os.Stat(filepath.Join(sim.Root, strings.TrimPrefix(tenantDir, "/ifs/")))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o066 != 0 {
		t.Errorf("tenant directory %s has mode %04o: other users list or change it (want 0711)", tenantDir, perm)
	}
	// An export of the whole tree, open to this host, as an admin may have made long ago.
	if st, body := rawPOST(t, f, "/platform/2/protocols/nfs/exports?zone=System",
		`{"paths":["/ifs/data/shiphold"],"clients":["127.0.0.1"],"description":"legacy export"}`); st != 201 {
		t.Fatalf("legacy export: %d %s", st, body)
	}
	rel := strings.TrimPrefix(tenantDir, "/ifs/data/shiphold")
	var out []byte
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		// A client user of another tenant (uid 1000) through the legacy export.
		out, err = exec.Command("nfs-ls", isoURL("/ifs/data/shiphold"+rel, "&uid=1000&gid=1000")).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "MNT3ERR") || time.Now().After(deadline) {
			break
		}
	}
	if err == nil {
		t.Errorf("uid 1000 through an export above the tenant lists tenant shop's volumes:\n%s", out)
	} else if !strings.Contains(strings.ToLower(string(out)), "permission denied") && !strings.Contains(string(out), "ACCES") {
		t.Errorf("listing the tenant directory failed for another reason than permission: %v: %s", err, out)
	}
	// The same client lists the tree above the tenant: the refusal is the tenant's mode.
	if out, err := exec.Command("nfs-ls", isoURL("/ifs/data/shiphold", "&uid=1000&gid=1000")).CombinedOutput(); err != nil || !strings.Contains(string(out), "shop") {
		t.Errorf("uid 1000 cannot list the legacy export itself: %v: %s", err, out)
	}
}
