package isilontest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

var mountCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
}

func startDriver(t testing.TB) (*harness.OneFS, *harness.Driver) {
	sim := harness.StartOneFS(t)
	be := sim.Backend(t, "isi")
	return sim, harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
}

// TestDriverHungArray: with the array hanging, a CSI call returns within its deadline with
// UNAVAILABLE or DEADLINE_EXCEEDED, and works again once the array answers.
func TestDriverHungArray(t *testing.T) {
	sim, d := startDriver(t)
	cc := d.Controller()
	create := func(ctx context.Context, name string) error {
		_, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: map[string]string{"backend": "isi"},
			VolumeCapabilities: []*csi.VolumeCapability{mountCap}, CapacityRange: &csi.CapacityRange{RequiredBytes: mib}})
		return err
	}
	if err := create(ctxT(t), "warm"); err != nil {
		t.Fatal(err)
	}
	sim.Server.SetHang(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := create(ctx, "hung")
	took := time.Since(start)
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Fatalf("hung array: %v", err)
	}
	if took > 3*time.Second {
		t.Fatalf("call took %s with a 2s deadline", took)
	}
	sim.Server.SetHang(false)
	if err := create(ctxT(t), "after"); err != nil {
		t.Fatalf("after the hang: %v", err)
	}
}

// TestSimNodeStandIn stages through the test-only loopback stand-in: refused until
// ControllerPublish lists the node, then the export's real directory is mounted.
func TestSimNodeStandIn(t *testing.T) {
	harness.RequireRoot(t, "the NFS stand-in's bind mounts")
	f := setup(t)
	t.Setenv(isilon.StandInEnv, f.sim.Root)
	st, err := isilon.NewStager(&f.be)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Mounter.(*isilon.LoopbackNFS); !ok {
		t.Fatalf("mounter %T, want the stand-in", st.Mounter)
	}
	ctx := ctxT(t)
	v := f.create(t, "pvc-node", "shop", 8*mib)
	staging := t.TempDir()
	req := &backend.StageRequest{ID: v.ID, StagingPath: staging, Context: v.Context}
	err = st.StageVolume(ctx, req)
	if backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("stage before publish: %v", err)
	}
	pc, err := f.ctrl.PublishVolume(ctx, v.ID, backend.Node{Name: "node-1", Address: "127.0.0.1"}, backend.PublishAccess{}, v.Context, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.PublishContext = pc
	if err := st.StageVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.UnstageVolume(context.Background(), v.ID, staging) })
	src, _, err := st.PublishSource(ctx, v.ID, staging)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("via mount"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.realDir(v.Context[isilon.CtxExportPath]), "hello")); err != nil || string(b) != "via mount" {
		t.Fatalf("written through the mount, read in the simulator: %q %v", b, err)
	}
	if err := st.UnstageVolume(ctx, v.ID, staging); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(staging, "fs")); !os.IsNotExist(err) {
		t.Fatalf("staging left: %v", err)
	}
}
