package cephfstest

import (
	"bytes"
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
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

// needRoot requires what the node tests need: root to mount, and ceph-fuse (this kernel has
// no ceph module).
func needRoot(t *testing.T) {
	harness.RequireRoot(t, "mounting CephFS")
	harness.RequireCommand(t, "ceph-fuse", "apt-get install ceph-fuse, or hack/install-deps.sh")
}

func (e *env) driver(t *testing.T) *driver.Driver {
	d, err := driver.Compose(driver.ModeAll, driver.Options{Kinds: registry.Kinds(),
		Name: "shiphold.test", Version: "test", NodeName: "node1", NodeAddress: "127.0.0.1",
		Config:      &config.Config{Backends: []config.Backend{*e.cfg}},
		Controllers: map[string]backend.Controller{e.cfg.Name: e.ctrl},
		Stagers:     map[string]backend.Stager{e.cfg.Name: e.stg},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var mountCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
}

type staged struct {
	id, staging string
	vol         *csi.Volume
}

// attach publishes volume id to this node as the external-attacher does and returns what
// these tests stage with of the publish context: the subvolume's data directory, which the
// volume context of a new volume does not name (pathOnly).
func attach(t *testing.T, d *driver.Driver, id string, vc map[string]string) map[string]string {
	t.Helper()
	rsp, err := d.ControllerPublishVolume(ctxT(t), &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node1@127.0.0.1",
		VolumeCapability: mountCap, VolumeContext: vc})
	if err != nil {
		t.Fatalf("ControllerPublishVolume %s: %v", id, err)
	}
	return pathOnly(rsp.GetPublishContext())
}

// pathOnly keeps the data directory of a publish context and leaves the tenant's identity
// out: these tests mount with the backend config's credentials, as their repairs without
// a key at rest need (test/isolation stages with the identity).
func pathOnly(pc map[string]string) map[string]string {
	return map[string]string{cephfs.PublishContextRootPath: pc[cephfs.PublishContextRootPath]}
}

// createAndStage creates a volume through the driver and stages it.
func createAndStage(t *testing.T, e *env, d *driver.Driver, name string, size int64) staged {
	ctx := ctxT(t)
	resp, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{mountCap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		Parameters:    map[string]string{backend.ParamBackend: e.cfg.Name, backend.ParamPVCNamespace: "team-n"}})
	if err != nil {
		t.Fatal(err)
	}
	s := staged{id: resp.Volume.VolumeId, staging: filepath.Join(t.TempDir(), "staging"), vol: resp.Volume}
	t.Cleanup(func() { d.DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: s.id}) })
	if _, err := d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: s.id, StagingTargetPath: s.staging,
		VolumeCapability: mountCap, VolumeContext: resp.Volume.VolumeContext, PublishContext: attach(t, d, s.id, resp.Volume.VolumeContext)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unstage(t, d, s) })
	noKeyAtRest(t, s.staging)
	return s
}

// noKeyAtRest fails when a cephx key file stays below the staging path once it is mounted.
func noKeyAtRest(t *testing.T, staging string) {
	t.Helper()
	if keys, _ := filepath.Glob(filepath.Join(staging, ".shiphold-key-*")); len(keys) != 0 {
		t.Errorf("cephx key file kept at rest while mounted: %v", keys)
	}
}

func unstage(t *testing.T, d *driver.Driver, s staged) {
	if _, err := d.NodeUnstageVolume(ctxT(t), &csi.NodeUnstageVolumeRequest{VolumeId: s.id, StagingTargetPath: s.staging}); err != nil {
		t.Errorf("unstage: %v", err)
	}
	if pids := fuseFor(s.staging); len(pids) > 0 {
		t.Errorf("ceph-fuse left behind after unstage: %v", pids)
	}
}

func publish(t *testing.T, d *driver.Driver, s staged, target string) {
	t.Helper()
	if _, err := d.NodePublishVolume(ctxT(t), &csi.NodePublishVolumeRequest{VolumeId: s.id, StagingTargetPath: s.staging,
		TargetPath: target, VolumeCapability: mountCap}); err != nil {
		t.Fatalf("publish %s: %v", target, err)
	}
	t.Cleanup(func() {
		d.NodeUnpublishVolume(ctxT(t), &csi.NodeUnpublishVolumeRequest{VolumeId: s.id, TargetPath: target})
	})
}

// fuseFor lists ceph-fuse processes whose arguments mention path.
func fuseFor(path string) []string {
	out, _ := exec.Command("pgrep", "-a", "ceph-fuse").Output()
	var hits []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && strings.Contains(l, path) {
			hits = append(hits, l)
		}
	}
	return hits
}

// writeFile writes n MiB and fsyncs, returning the first error.
func writeFile(path string, mib int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	buf := bytes.Repeat([]byte{'x'}, 1<<20)
	for i := 0; i < mib; i++ {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestCephFSRealQuotaExpandAndTwoTargets(t *testing.T) {
	needRoot(t)
	e := needCeph(t)
	d := e.driver(t)
	s := createAndStage(t, e, d, "pvc-real-quota", 16<<20)
	dir := t.TempDir()
	t1, t2 := filepath.Join(dir, "t1"), filepath.Join(dir, "t2")
	publish(t, d, s, t1)
	publish(t, d, s, t2)

	if err := os.WriteFile(filepath.Join(t1, "shared"), []byte("seen by both"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(t2, "shared")); err != nil || string(got) != "seen by both" {
		t.Fatalf("second target reads %q, %v", got, err)
	}

	err := writeFile(filepath.Join(t1, "fill"), 40)
	if !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("writing 40 MiB into a 16 MiB volume: %v, want EDQUOT (disk quota exceeded)", err)
	}
	t.Logf("past the quota: %v", err)

	resp, err := d.ControllerExpandVolume(ctxT(t), &csi.ControllerExpandVolumeRequest{VolumeId: s.id,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 128 << 20}, VolumeCapability: mountCap})
	if err != nil || resp.CapacityBytes != 128<<20 || resp.NodeExpansionRequired {
		t.Fatalf("ControllerExpandVolume: %+v %v", resp, err)
	}
	// The client learns the new quota from the MDS without a remount.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err = writeFile(filepath.Join(t2, "more"), 30)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write after expand: %v", err)
		}
		os.Remove(filepath.Join(t2, "more"))
		time.Sleep(500 * time.Millisecond)
	}
	nresp, err := d.NodeExpandVolume(ctxT(t), &csi.NodeExpandVolumeRequest{VolumeId: s.id, VolumePath: t1, StagingTargetPath: s.staging,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 128 << 20}})
	if err != nil || nresp.CapacityBytes != 128<<20 {
		t.Fatalf("NodeExpandVolume: %+v %v", nresp, err)
	}
}

func TestCephFSRealKillFuseAndRepair(t *testing.T) {
	needRoot(t)
	e := needCeph(t)
	d := e.driver(t)
	s := createAndStage(t, e, d, "pvc-real-kill", 32<<20)
	dir := t.TempDir()
	t1 := filepath.Join(dir, "t1")
	publish(t, d, s, t1)
	if err := os.WriteFile(filepath.Join(t1, "keep"), []byte("survives"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Flush and let the client hand its caps back: the MDS keeps a killed client's caps
	// until it evicts the session (minutes), and a reader would wait for them.
	exec.Command("sync", "-f", filepath.Join(t1, "keep")).Run()
	time.Sleep(6 * time.Second)
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
	if _, err := os.Stat(filepath.Join(s.staging, "fs")); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat after kill: %v, want ENOTCONN", err)
	}
	h, err := d.NodeGetVolumeHealth(ctxT(t), &csi.NodeGetVolumeHealthRequest{VolumeId: s.id, StagingTargetPath: s.staging, VolumePublishPath: t1})
	if err != nil || len(h.VolumeHealth.HealthStatuses) == 0 || h.VolumeHealth.HealthStatuses[0].Reason != "TransportEndpointNotConnected" {
		t.Fatalf("health after kill: %v %v", h, err)
	}
	// A new publish repairs the staging mount first.
	t2 := filepath.Join(dir, "t2")
	start := time.Now()
	publish(t, d, s, t2)
	t.Logf("repair + publish took %v", time.Since(start))
	if got, err := os.ReadFile(filepath.Join(t2, "keep")); err != nil || string(got) != "survives" {
		t.Fatalf("after repair: %q %v", got, err)
	}
	t.Logf("read back after %v", time.Since(start))
	// The old target still binds the dead mount: publishing it again binds it anew.
	publish(t, d, s, t1)
	if got, err := os.ReadFile(filepath.Join(t1, "keep")); err != nil || string(got) != "survives" {
		t.Fatalf("old target after republish: %q %v", got, err)
	}
	if n := len(fuseFor(s.staging)); n != 1 {
		t.Fatalf("%d ceph-fuse processes after repair, want 1", n)
	}
	noKeyAtRest(t, s.staging)
	id, _ := volid.ParseVolume(s.id)
	if err := e.stg.Repair(ctxT(t), id, s.staging, nil); err != nil {
		t.Fatalf("Repair on a healthy mount: %v", err)
	}
}
