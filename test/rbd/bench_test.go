package rbdtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// TestBenchRBD (SHIPHOLD_BENCH=1) times CreateVolume and DeleteVolume through the driver's
// gRPC endpoint (in-process, unix socket) beside raw go-ceph CreateImage, and a raw trash move
// plus queued purge (what DeleteVolume does), of the same size and features in the same
// tenant namespace, same process, same concurrency.
// The RBD trash is drained before every timed phase (the mgr purges a burst's 128 images
// one at a time: minutes on a loaded machine), and a burst's deletes are timed until it is
// drained again (BackgroundDeletes): the driver keeps at most 64 purges in the mgr's queue
// and holds the others (purgefeed.go), so its calls answer before the raw side's, which
// queues all 128; timed to the empty trash, both sides are timed for the same work.
func TestBenchRBD(t *testing.T) {
	if os.Getenv("SHIPHOLD_BENCH") != "1" {
		t.Skip("set SHIPHOLD_BENCH=1 to run the rbd benchmark (make bench)")
	}
	sizes := harness.BenchSizesFromEnv(t)
	be := harness.RBDBackend(t, "bench-rbd")
	tenant := fmt.Sprintf("bench-%d", time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	ours := d.DriverSide(map[string]string{backend.ParamBackend: be.Name, backend.ParamPVCNamespace: tenant}, capability, sizes.Bytes)

	conn, io := rawPool(t, be.Section.(*rbd.Config).Pool)
	// The driver makes the tenant's namespace; one volume through each side warms both up.
	warm(t, ctx, ours, "warm")
	io.SetNamespace(tenant)
	t.Cleanup(func() { removeNamespace(io, tenant) })
	opts := librbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := opts.SetUint64(librbd.ImageOptionFeatures, librbd.FeatureLayering); err != nil {
		t.Fatal(err)
	}
	raw := harness.BenchSide{
		Create: func(ctx context.Context, name string) (string, error) {
			return name, librbd.CreateImage(io, name, uint64(sizes.Bytes), opts)
		},
		Delete: func(ctx context.Context, name string) error {
			return rawTrashDelete(conn, io, be.Section.(*rbd.Config).Pool, tenant, name)
		},
	}
	warm(t, ctx, raw, "raw-warm")

	b := &harness.Bench{Kind: "rbd", Sizes: sizes, Driver: ours, Raw: raw, BackgroundDeletes: true, Settle: func(t testing.TB) {
		harness.WaitFor(t, "rbd trash of namespace "+tenant, 5*time.Minute, func() (bool, string) {
			entries, err := librbd.GetTrashList(io)
			return err == nil && len(entries) == 0, fmt.Sprintf("%d entries, %v", len(entries), err)
		})
	}}
	b.Run(t, ctx)
	// Run's pairs each make the tenant's first volume (and its identity); these its n-th.
	b.RunKept(t, ctx)
}

// rawPool opens the pool with its own rados connection (the driver has its own), as admin
// of the local cluster.
func rawPool(t *testing.T, pool string) (*rados.Conn, *rados.IOContext) {
	t.Helper()
	conn, err := rados.NewConnWithUser("admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadConfigFile(filepath.Join(harness.CephDir(), "ceph.conf")); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetConfigOption("keyring", filepath.Join(harness.CephDir(), "ceph.client.admin.keyring")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Shutdown)
	io, err := conn.OpenIOContext(pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(io.Destroy)
	return conn, io
}

// rawTrashDelete is what DeleteVolume does to an image, in raw calls: move it to the RBD
// trash and queue its purge in the mgr's task queue (rbd_support), whose work neither side
// waits for (the trash is drained before every timed phase).
func rawTrashDelete(conn *rados.Conn, io *rados.IOContext, pool, ns, name string) error {
	img, err := librbd.OpenImageReadOnly(io, name, librbd.NoSnapshot)
	if err != nil {
		return err
	}
	id, err := img.GetId()
	img.Close()
	if err != nil {
		return err
	}
	if err := librbd.GetImage(io, name).Trash(0); err != nil {
		return err
	}
	cmd, err := json.Marshal(map[string]string{"prefix": "rbd task add trash remove", "image_id_spec": pool + "/" + ns + "/" + id, "format": "json"})
	if err != nil {
		return err
	}
	_, status, err := conn.MgrCommand([][]byte{cmd})
	if err != nil {
		return fmt.Errorf("queue the purge of %s: %v (%s)", name, err, status)
	}
	return nil
}

func warm(t *testing.T, ctx context.Context, side harness.BenchSide, name string) {
	t.Helper()
	h, err := side.Create(ctx, name)
	if err != nil {
		t.Fatalf("warm-up create: %v", err)
	}
	if err := side.Delete(ctx, h); err != nil {
		t.Fatalf("warm-up delete: %v", err)
	}
}

// removeNamespace drops the bench tenant's namespace once the bench emptied it.
func removeNamespace(io *rados.IOContext, ns string) {
	io.SetNamespace("")
	_ = librbd.NamespaceRemove(io, ns)
}
