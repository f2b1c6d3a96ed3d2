package isilontest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

// deadNFS mounts every NFS export as a harness.FrozenFS: an NFS server that answers until
// the test freezes it, as one that dies (or is SIGSTOPped) under live mounts.
type deadNFS struct {
	mount.Interface
	t   *testing.T
	mu  sync.Mutex
	fss []*harness.FrozenFS
}

func (d *deadNFS) Mount(source, target, fstype string, options []string) error {
	if fstype != "nfs" {
		return d.Interface.Mount(source, target, fstype, options)
	}
	fs := harness.MountFrozenFS(d.t, target)
	d.mu.Lock()
	d.fss = append(d.fss, fs)
	d.mu.Unlock()
	return nil
}

func (d *deadNFS) freeze() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, fs := range d.fss {
		fs.Freeze()
	}
}

var errBlocked = errors.New("still blocked")

// answers runs one node call and waits for its answer; a call on a dead server must answer
// within its bound (a second here), never block the plugin.
func answers(t *testing.T, name string, call func(ctx context.Context) error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- call(context.Background()) }()
	select {
	case err := <-done:
		t.Logf("%s answered after %v: %v", name, time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(20 * time.Second):
		t.Errorf("%s is still blocked after 20s on a dead NFS server", name)
		return errBlocked
	}
}

// TestNodeCallsOnADeadNFSServerAreBounded stages and publishes an Isilon volume whose NFS
// server then stops answering. Every node call on it must answer within its bound, none
// may keep the volume's lock, and unpublish and unstage must still take the mounts away.
func TestNodeCallsOnADeadNFSServerAreBounded(t *testing.T) {
	t.Setenv(isilon.StandInEnv, "")
	cfg := config.Backend{Name: "isi", Kind: backend.KindIsilon, Section: &isilon.Config{
		Endpoint: "https://127.0.0.1:1", IsiPath: "/ifs/data/shiphold", NFSServer: "nfs.invalid"}}
	stg, err := isilon.NewStager(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	dead := &deadNFS{Interface: mount.New(""), t: t}
	stg.Mounter = dead
	stg.CallTimeout = time.Second
	d, err := driver.Compose(driver.ModeNode, driver.Options{Kinds: registry.Kinds(), Name: "shiphold.test", Version: "test", NodeName: "n1", NodeAddress: "127.0.0.1",
		Config: &config.Config{Backends: []config.Backend{cfg}}, Stagers: map[string]backend.Stager{"isi": stg}, MountCallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	id := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("pvc-dead")}.String()
	dir := t.TempDir()
	staging, target, target2 := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pods", "p1", "mount"), filepath.Join(dir, "pods", "p2", "mount")
	t.Cleanup(func() {
		for _, p := range []string{target, target2, filepath.Join(staging, "fs")} {
			mount.New("").Unmount(p)
		}
	})
	vcap := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}
	ctx := context.Background()
	if _, err := d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vcap}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vcap}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target}); err != nil {
		t.Fatalf("stats of the live mount: %v", err)
	}
	dead.freeze()

	err = answers(t, "NodeGetVolumeStats", func(ctx context.Context) error {
		_, err := d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
		return err
	})
	if err != errBlocked && status.Code(err) != codes.Unavailable {
		t.Errorf("stats on a dead server: %v, want UNAVAILABLE", err)
	}
	err = answers(t, "NodeGetVolumeHealth", func(ctx context.Context) error {
		h, err := d.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id, StagingTargetPath: staging, VolumePublishPath: target})
		// The staging path is the directory below the mount; the published path is the mount.
		if err == nil && (len(h.VolumeHealth.HealthStatuses) != 1 || h.VolumeHealth.HealthStatuses[0].Reason != "NotResponding") {
			return errors.New("health reports " + h.String())
		}
		return err
	})
	if err != nil && err != errBlocked {
		t.Errorf("health on a dead server: %v", err)
	}
	err = answers(t, "NodePublishVolume (repairs the staged mount first)", func(ctx context.Context) error {
		_, err := d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target2, VolumeCapability: vcap})
		return err
	})
	if err != errBlocked && status.Code(err) != codes.Unavailable {
		t.Errorf("publish on a dead server: %v, want UNAVAILABLE", err)
	}
	err = answers(t, "NodeExpandVolume", func(ctx context.Context) error {
		_, err := d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: target, StagingTargetPath: staging,
			CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
		return err
	})
	if err != errBlocked && status.Code(err) != codes.Unavailable {
		t.Errorf("expand on a dead server: %v, want UNAVAILABLE", err)
	}
	// The calls above let go of the volume's lock: unpublish and unstage take it and still
	// take the mounts away (forced, then lazy).
	for _, call := range []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"NodeUnpublishVolume", func(ctx context.Context) error {
			_, err := d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
			return err
		}},
		{"NodeUnstageVolume", func(ctx context.Context) error {
			_, err := d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
			return err
		}},
	} {
		if err := answers(t, call.name, call.fn); err != nil {
			t.Errorf("%s on a dead server: %v", call.name, err)
		}
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), dir) {
		t.Errorf("still mounted below %s after unpublish and unstage:\n%s", dir, mounts)
	}
}
