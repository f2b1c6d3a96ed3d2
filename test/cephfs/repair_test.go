package cephfstest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
)

// TestCephFSRealRepairStagedRebindsTargets: after the ceph-fuse of a staged volume died (a
// plugin restart with the daemon in the plugin's cgroup, an OOM kill), the plugin's start-up
// repair remounts it and binds the pod's target, never published again, to the new mount.
func TestCephFSRealRepairStagedRebindsTargets(t *testing.T) {
	needRoot(t)
	e := needCeph(t)
	d := e.driver(t)
	ctx := ctxT(t)
	resp, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-repair-rebind", VolumeCapabilities: []*csi.VolumeCapability{mountCap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20},
		Parameters:    map[string]string{backend.ParamBackend: e.cfg.Name, backend.ParamPVCNamespace: "team-n"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: resp.Volume.VolumeId}) })
	// The kubelet's layout: <kubelet>/plugins/kubernetes.io/csi/<driver>/<hash>/{vol_data.json,globalmount}
	kubelet := t.TempDir()
	dir := filepath.Join(kubelet, "plugins", "kubernetes.io", "csi", "shiphold.test", "h1")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vol_data.json"), []byte(`{"driverName":"shiphold.test","volumeHandle":"`+resp.Volume.VolumeId+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := staged{id: resp.Volume.VolumeId, staging: filepath.Join(dir, "globalmount"), vol: resp.Volume}
	if _, err := d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: s.id, StagingTargetPath: s.staging,
		VolumeCapability: mountCap, VolumeContext: resp.Volume.VolumeContext, PublishContext: attach(t, d, s.id, resp.Volume.VolumeContext)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unstage(t, d, s) })
	target := filepath.Join(kubelet, "pods", "p1", "volumes", "kubernetes.io~csi", "pv", "mount")
	publish(t, d, s, target)
	if err := os.WriteFile(filepath.Join(target, "keep"), []byte("survives"), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command("sync", "-f", filepath.Join(target, "keep")).Run()
	time.Sleep(6 * time.Second) // the MDS keeps a killed client's caps until it evicts it

	procs := fuseFor(s.staging)
	if len(procs) != 1 {
		t.Fatalf("ceph-fuse processes for %s: %v", s.staging, procs)
	}
	var pid int
	if _, err := fmtSscan(procs[0], &pid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(target); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("the pod's target after the kill: %v, want ENOTCONN", err)
	}

	start := time.Now()
	if n := d.RepairStaged(ctx, kubelet); n != 1 {
		t.Fatalf("RepairStaged checked %d volumes, want 1", n)
	}
	t.Logf("repair and re-bind took %v", time.Since(start))
	if got, err := os.ReadFile(filepath.Join(target, "keep")); err != nil || string(got) != "survives" {
		t.Fatalf("the pod's target after the start-up repair: %q %v (it still binds the dead mount)", got, err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if n := strings.Count(string(mi), " "+target+" "); n != 1 {
		t.Errorf("the target is mounted %d times after the re-bind, want once", n)
	}
}
