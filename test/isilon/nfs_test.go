package isilontest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/onefssim"
)

// Ports for this test's ganesha, apart from hack/nfs-server.sh's defaults and the
// simulator's own NFS test.
const (
	nfsPort = "12249"
	mntPort = "12248"
)

func nfsServer(t *testing.T, args ...string) {
	t.Helper()
	script, _ := filepath.Abs("../../hack/nfs-server.sh")
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), "NFS_PORT="+nfsPort, "MNT_PORT="+mntPort)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nfs-server.sh %v: %v\n%s", args, err, out)
	}
}

func nfsCopy(src, exportPath, name string) (string, error) {
	url := fmt.Sprintf("nfs://127.0.0.1%s/%s?nfsport=%s&mountport=%s&version=3", exportPath, name, nfsPort, mntPort)
	out, err := exec.Command("nfs-cp", src, url).CombinedOutput()
	return string(out), err
}

// TestIsilonRealNFSv3ThroughShipholdVolume proves the data path of a shiphold Isilon volume
// over real NFSv3: the simulator's exports are served by nfs-ganesha; after
// ControllerPublishVolume to this node a file written through the export is read back from
// the volume's directory, and after ControllerUnpublishVolume the same node is refused.
func TestIsilonRealNFSv3ThroughShipholdVolume(t *testing.T) {
	_, errG := exec.LookPath("ganesha.nfsd")
	_, errC := exec.LookPath("nfs-cp")
	harness.Require(t, "nfs-ganesha and nfs-cp", errG == nil && errC == nil, "apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils")
	nfsDir := t.TempDir()
	nfsServer(t, "start", nfsDir)
	t.Cleanup(func() { nfsServer(t, "stop", nfsDir) })
	sim := harness.StartOneFSWith(t, func(o *onefssim.Options) {
		o.Ganesha = &onefssim.GaneshaOptions{ExportsFile: filepath.Join(nfsDir, "exports.conf"), PidFile: filepath.Join(nfsDir, "ganesha.pid")}
	})
	if err := os.Chmod(sim.Root, 0o755); err != nil { // ganesha's VFS FSAL walks the path
		t.Fatal(err)
	}
	be := sim.Backend(t, "isilon-nfs")
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	ctrl := d.Controller()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vcap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-nfs-data", CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{vcap}, Parameters: map[string]string{"backend": be.Name, "csi.storage.k8s.io/pvc/namespace": "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vol.Volume.VolumeId})
	exportPath := vol.Volume.VolumeContext["exportPath"]
	if !strings.HasPrefix(exportPath, "/ifs/data/shiphold/shop/") {
		t.Fatalf("export path %q is not in tenant shop's directory", exportPath)
	}
	payload := make([]byte, 200<<10)
	_, _ = rand.Read(payload)
	src := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(src, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := nfsCopy(src, exportPath, "before-publish.bin"); err == nil || !strings.Contains(out, "MNT3ERR_ACCES") {
		t.Fatalf("a node not yet published wrote through the export: err=%v out=%s", err, out)
	}

	node := "node-1@127.0.0.1"
	if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol.Volume.VolumeId, NodeId: node,
		VolumeCapability: vcap, VolumeContext: vol.Volume.VolumeContext}); err != nil {
		t.Fatal(err)
	}
	// ganesha applies the reload asynchronously.
	var out string
	deadline := time.Now().Add(15 * time.Second)
	for {
		if out, err = nfsCopy(src, exportPath, "data.bin"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("published node cannot write through NFSv3: %v: %s", err, out)
	}
	onDisk := filepath.Join(sim.Root, strings.TrimPrefix(exportPath, "/ifs/"), "data.bin")
	if got, err := os.ReadFile(onDisk); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("volume directory has %d bytes (%v), want the %d written over NFS", len(got), err, len(payload))
	}

	if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.Volume.VolumeId, NodeId: node}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		// Until the refusal shows: a mount during ganesha's reload may fail otherwise.
		out, err = nfsCopy(src, exportPath, "after-unpublish.bin")
		if strings.Contains(out, "MNT3ERR_ACCES") || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err == nil || !strings.Contains(out, "MNT3ERR_ACCES") {
		t.Fatalf("an unpublished node still writes through the export: err=%v out=%s", err, out)
	}
}

// TestIsilonHardQuotaThroughNFS: OneFS enforces a volume's hard quota on writes, also over
// NFS. The simulator does it with a btrfs qgroup (onefssim EnforceHardQuotas); a write
// through the ganesha export past the volume's size fails, one below it lands.
func TestIsilonHardQuotaThroughNFS(t *testing.T) {
	_, errG := exec.LookPath("ganesha.nfsd")
	_, errC := exec.LookPath("nfs-cp")
	_, errB := exec.LookPath("mkfs.btrfs")
	harness.Require(t, "root, nfs-ganesha, nfs-cp and btrfs-progs", os.Geteuid() == 0 && errG == nil && errC == nil && errB == nil,
		"run as root; apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils btrfs-progs")
	root, cleanup, err := onefssim.NewBtrfsRoot(t.TempDir(), 512<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cleanup(); err != nil {
			t.Error(err)
		}
	})
	const port, mport = "12269", "12268"
	nfsDir := t.TempDir()
	start := exec.Command("../../hack/nfs-server.sh", "start", nfsDir)
	start.Env = append(os.Environ(), "NFS_PORT="+port, "MNT_PORT="+mport)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("nfs-server.sh start: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stop := exec.Command("../../hack/nfs-server.sh", "stop", nfsDir)
		stop.Env = append(os.Environ(), "NFS_PORT="+port, "MNT_PORT="+mport)
		_ = stop.Run()
	})
	sim := harness.StartOneFSWith(t, func(o *onefssim.Options) {
		o.Root = root
		o.EnforceHardQuotas = true
		o.Ganesha = &onefssim.GaneshaOptions{ExportsFile: filepath.Join(nfsDir, "exports.conf"), PidFile: filepath.Join(nfsDir, "ganesha.pid")}
	})
	be := sim.Backend(t, "isilon-quota")
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	ctrl := d.Controller()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vcap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-quota", CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{vcap}, Parameters: map[string]string{"backend": be.Name, "csi.storage.k8s.io/pvc/namespace": "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol.Volume.VolumeId, NodeId: "node-1@127.0.0.1",
		VolumeCapability: vcap, VolumeContext: vol.Volume.VolumeContext}); err != nil {
		t.Fatal(err)
	}
	exportPath := vol.Volume.VolumeContext["exportPath"]
	cp := func(name string, size int) (string, error) {
		src := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(src, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("nfs://127.0.0.1%s/%s?nfsport=%s&mountport=%s&version=3", exportPath, name, port, mport)
		out, err := exec.Command("nfs-cp", src, url).CombinedOutput()
		return string(out), err
	}
	var out string
	deadline := time.Now().Add(15 * time.Second) // ganesha applies the reload asynchronously
	for {
		if out, err = cp("small.bin", 300<<10); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("a 300 KiB write into a 1 MiB volume over NFS: %v: %s", err, out)
	}
	if out, err = cp("big.bin", 2<<20); err == nil {
		t.Fatalf("a 2 MiB write into a 1 MiB volume over NFS succeeded: %s", out)
	}
	var used int64
	_ = filepath.Walk(filepath.Join(sim.Root, strings.TrimPrefix(exportPath, "/ifs/")), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			used += fi.Size()
		}
		return nil
	})
	if used > 1<<20 {
		t.Fatalf("the volume holds %d bytes, over its 1 MiB hard quota", used)
	}
	t.Logf("over NFS: 300 KiB landed, 2 MiB refused (%s); the volume holds %d bytes", strings.TrimSpace(out), used)
}
