package cephfstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/cephfs"
	"github.com/ceph/go-ceph/cephfs/admin"
	"github.com/ceph/go-ceph/rados"
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	cephfsbe "github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// TestBenchCephFS (SHIPHOLD_BENCH=1) times CreateVolume and DeleteVolume through the
// driver's gRPC endpoint (in-process, unix socket) beside raw go-ceph subvolume create
// (with the same size as quota) and remove in the same subvolume group, same process,
// same concurrency. The subvolume trash and the MDS purge queue are drained before every
// timed phase, and a burst's deletes are timed until they are drained again.
func TestBenchCephFS(t *testing.T) {
	if os.Getenv("SHIPHOLD_BENCH") != "1" {
		t.Skip("set SHIPHOLD_BENCH=1 to run the cephfs benchmark (make bench)")
	}
	sizes := harness.BenchSizesFromEnv(t)
	be := harness.CephFSBackend(t, "bench-cephfs")
	tenant := fmt.Sprintf("bench-%d", time.Now().UnixNano()%1e9)
	group := be.Section.(*cephfsbe.Config).SubvolumeGroupPrefix + tenant
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	ours := d.DriverSide(map[string]string{backend.ParamBackend: be.Name, backend.ParamPVCNamespace: tenant}, capability, sizes.Bytes)

	conn := rawConn(t)
	fsa := admin.NewFromConn(conn)
	fs := be.Section.(*cephfsbe.Config).FSName
	// The driver makes the tenant's group; one volume through each side warms both up.
	warm(t, ctx, ours, "warm")
	t.Cleanup(func() { _ = fsa.RemoveSubVolumeGroup(fs, group) })
	raw := harness.BenchSide{
		Create: func(ctx context.Context, name string) (string, error) {
			return name, fsa.CreateSubVolume(fs, group, name, &admin.SubVolumeOptions{Size: admin.ByteCount(sizes.Bytes)})
		},
		Delete: func(ctx context.Context, name string) error { return fsa.RemoveSubVolume(fs, group, name) },
	}
	warm(t, ctx, raw, "raw-warm")

	trash := mountTrash(t, conn)
	perCreate, perDelete := mgrCommandsPerVolume(t, ctx, ours, group)
	// The mgr purges a removed subvolume in the background (its trash): a burst's deletes
	// are timed until the trash and the MDS purge queue are empty (BackgroundDeletes).
	b := &harness.Bench{Kind: "cephfs", Sizes: sizes, Driver: ours, Raw: raw, BackgroundDeletes: true,
		Suffix: fmt.Sprintf(" mgr_commands_per_create=%.1f mgr_commands_per_delete=%.1f", perCreate, perDelete)}
	b.Settle = func(t testing.TB) {
		harness.WaitFor(t, "cephfs subvolume trash and MDS purge queue", 3*time.Minute, func() (bool, string) {
			n, err := trash()
			pq, perr := purgeQueue(fs)
			return err == nil && perr == nil && n == 0 && pq.idle(),
				fmt.Sprintf("%d subvolumes in %s (%v); purge queue %+v (%v)", n, trashDir, err, pq, perr)
		})
	}
	b.Run(t, ctx)
	// Run's pairs each make the tenant's first volume (and its identity); these its n-th.
	b.RunKept(t, ctx)
}

// mgrCommandsPerVolume counts, in the mgr's own log, the volumes-module commands about the
// bench tenant's subvolume group that a few creates and deletes through the driver send
// (the group itself already exists, as for every create but a tenant's first). The mgr
// volumes module serves one command at a time, so each is paid by every create in a burst.
func mgrCommandsPerVolume(t *testing.T, ctx context.Context, side harness.BenchSide, group string) (perCreate, perDelete float64) {
	t.Helper()
	const n = 5
	count := func(from int64) (int64, int) { return mgrCommandsSince(t, from, "group_name:"+group+",") }
	start, _ := count(0)
	var ids []string
	for i := 0; i < n; i++ {
		id, err := side.Create(ctx, fmt.Sprintf("count-%d", i))
		if err != nil {
			t.Fatalf("count mgr commands: %v", err)
		}
		ids = append(ids, id)
	}
	mid, creates := count(start)
	for _, id := range ids {
		if err := side.Delete(ctx, id); err != nil {
			t.Fatalf("count mgr commands: %v", err)
		}
	}
	_, deletes := count(mid)
	if creates == 0 || deletes == 0 {
		t.Fatalf("no volumes-module commands for group %s in the mgr log of %s: is it this cluster's?", group, harness.CephDir())
	}
	return float64(creates) / n, float64(deletes) / n
}

// mgrCommandsSince counts the volumes-module commands whose arguments contain match that
// the mgr's own log shows from byte from on, and answers the log's size.
func mgrCommandsSince(t *testing.T, from int64, match string) (int64, int) {
	t.Helper()
	log := filepath.Join(harness.CephDir(), "log", "mgr.x.log")
	// The mgr logs through a thread of its own: wait until the lines stop coming.
	var size int64
	var started, prev int
	for stable := 0; stable < 3; time.Sleep(200 * time.Millisecond) {
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatalf("mgr log: %v", err)
		}
		size, started = int64(len(b)), 0
		for _, l := range strings.Split(string(b[from:]), "\n") {
			if strings.Contains(l, "volumes.module] Starting _cmd_") && strings.Contains(l, match) {
				started++
			}
		}
		if started == prev {
			stable++
		} else {
			stable, prev = 0, started
		}
	}
	return size, started
}

// rawConn is a rados connection of its own (the driver has its own) as admin.
func rawConn(t *testing.T) *rados.Conn {
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
	return conn
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

// trashDir is where the mgr volumes module moves a removed subvolume until its purge
// threads have deleted it.
const trashDir = "/volumes/_deleting"

// mountTrash mounts the filesystem with libcephfs and returns a counter of the subvolumes
// waiting in the trash.
func mountTrash(t *testing.T, conn *rados.Conn) func() (int, error) {
	t.Helper()
	m, err := cephfs.CreateFromRados(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(); err != nil {
		t.Fatalf("libcephfs mount: %v", err)
	}
	t.Cleanup(func() { _ = m.Unmount(); _ = m.Release() })
	return func() (int, error) {
		dir, err := m.OpenDir(trashDir)
		if errors.Is(err, cephfs.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		defer dir.Close()
		n := 0
		for {
			e, err := dir.ReadDir()
			if err != nil || e == nil {
				return n, err
			}
			if e.Name() != "." && e.Name() != ".." {
				n++
			}
		}
	}
}

// purgeQueueState is the MDS's count of files it is still deleting from RADOS.
type purgeQueueState struct {
	Executing     int `json:"pq_executing"`
	ExecutingOps  int `json:"pq_executing_ops"`
	ItemInJournal int `json:"pq_item_in_journal"`
}

func (p purgeQueueState) idle() bool {
	return p.Executing == 0 && p.ExecutingOps == 0 && p.ItemInJournal == 0
}

// purgeQueue asks rank 0's MDS for its purge queue counters.
func purgeQueue(fs string) (purgeQueueState, error) {
	out, err := exec.Command("ceph", "-c", filepath.Join(harness.CephDir(), "ceph.conf"), "tell", "mds."+fs+":0", "perf", "dump", "purge_queue").Output()
	if err != nil {
		return purgeQueueState{}, fmt.Errorf("ceph tell mds.%s:0 perf dump purge_queue: %w", fs, err)
	}
	var dump struct {
		PQ purgeQueueState `json:"purge_queue"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		return purgeQueueState{}, fmt.Errorf("purge_queue counters %q: %w", out, err)
	}
	return dump.PQ, nil
}
