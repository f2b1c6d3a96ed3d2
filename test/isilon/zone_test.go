package isilontest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
	"github.com/shiphold/shiphold/test/onefssim"
)

// The access zone of these tests: base path /ifs/zoneA on the simulator, shiphold's tree
// below it.
var simZoneA = isilon.Zone{Name: "zoneA", Key: "za", IsiPath: "/ifs/zoneA/shiphold"}

func startZoneSim(t *testing.T, adjust func(*onefssim.Options)) *fixture {
	t.Helper()
	sim := harness.StartOneFSWith(t, func(o *onefssim.Options) {
		o.Zones = map[string]string{"zoneA": "/ifs/zoneA"}
		if adjust != nil {
			adjust(o)
		}
	})
	be := sim.Backend(t, "isi-zone")
	be.Section.(*isilon.Config).Zones = []isilon.Zone{simZoneA}
	ctrl, err := isilon.NewController(&be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctrl.Close)
	return &fixture{sim: sim, be: be, ctrl: ctrl}
}

// exportPathsIn lists the paths of a zone's exports as the Platform API shows them.
func (f *fixture) exportPathsIn(t *testing.T, zone string) []string {
	t.Helper()
	var resp struct {
		Exports []struct {
			Paths []string `json:"paths"`
		} `json:"exports"`
	}
	f.papi(t, "/platform/2/protocols/nfs/exports?zone="+zone, &resp)
	var out []string
	for _, e := range resp.Exports {
		out = append(out, e.Paths...)
	}
	return out
}

// TestIsilonAccessZoneThroughNFS: a class with accessZone makes its volume in the zone's
// tree with its export in that zone only; a node published through the CSI driver writes
// over real NFSv3 (nfs-ganesha serving the simulator's exports) and the data lands below
// the zone's base path; delete removes directory, quota and export.
func TestIsilonAccessZoneThroughNFS(t *testing.T) {
	_, errG := exec.LookPath("ganesha.nfsd")
	_, errC := exec.LookPath("nfs-cp")
	harness.Require(t, "nfs-ganesha and nfs-cp", errG == nil && errC == nil, "apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils")
	const port, mport = "12289", "12288"
	nfsDir := t.TempDir()
	nfsScript := func(verb string) error {
		cmd := exec.Command("../../hack/nfs-server.sh", verb, nfsDir)
		cmd.Env = append(os.Environ(), "NFS_PORT="+port, "MNT_PORT="+mport)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("nfs-server.sh %s: %v\n%s", verb, err, out)
		}
		return nil
	}
	if err := nfsScript("start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nfsScript("stop") })
	f := startZoneSim(t, func(o *onefssim.Options) {
		o.Ganesha = &onefssim.GaneshaOptions{ExportsFile: filepath.Join(nfsDir, "exports.conf"), PidFile: filepath.Join(nfsDir, "ganesha.pid")}
	})
	if err := os.Chmod(f.sim.Root, 0o755); err != nil { // ganesha's VFS FSAL walks the path
		t.Fatal(err)
	}
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{f.be}}, driver.ModeController)
	ctrl := d.Controller()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	params := map[string]string{"backend": f.be.Name, "csi.storage.k8s.io/pvc/namespace": "shop", isilon.ParamAccessZone: "zoneA"}
	create := func(name string, params map[string]string) (*csi.CreateVolumeResponse, error) {
		return ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{mountCap}, Parameters: params})
	}
	unknown := map[string]string{"backend": f.be.Name, "csi.storage.k8s.io/pvc/namespace": "shop", isilon.ParamAccessZone: "zoneB"}
	if _, err := create("pvc-nozone", unknown); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "System, zoneA") {
		t.Fatalf("unknown zone: %v, want INVALID_ARGUMENT naming System, zoneA", err)
	}
	vol, err := create("pvc-zone-data", params)
	if err != nil {
		t.Fatal(err)
	}
	id := vol.Volume.VolumeId
	exportPath := vol.Volume.VolumeContext[isilon.CtxExportPath]
	if !strings.Contains(id, ":za:") || !strings.HasPrefix(exportPath, "/ifs/zoneA/shiphold/shop/csi-vol-") || vol.Volume.VolumeContext[isilon.CtxZone] != "zoneA" {
		t.Fatalf("volume %s with context %v is not in zone zoneA", id, vol.Volume.VolumeContext)
	}
	if in := f.exportPathsIn(t, "zoneA"); !slices.Contains(in, exportPath) {
		t.Fatalf("zoneA's exports %v lack %s", in, exportPath)
	}
	if in := f.exportPathsIn(t, "System"); slices.Contains(in, exportPath) {
		t.Fatalf("the System zone lists the zone volume's export: %v", in)
	}

	node := "node-1@127.0.0.1"
	if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node,
		VolumeCapability: mountCap, VolumeContext: vol.Volume.VolumeContext}); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 100<<10)
	_, _ = rand.Read(payload)
	src := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(src, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nfs://127.0.0.1%s/data.bin?nfsport=%s&mountport=%s&version=3", exportPath, port, mport)
	var out []byte
	deadline := time.Now().Add(15 * time.Second) // ganesha applies the reload asynchronously
	for {
		if out, err = exec.Command("nfs-cp", src, url).CombinedOutput(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("published node cannot write to the zone volume over NFSv3: %v: %s", err, out)
	}
	onDisk := filepath.Join(f.sim.Root, "zoneA", "shiphold", "shop", filepath.Base(exportPath), "data.bin")
	if got, err := os.ReadFile(onDisk); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("%s has %d bytes (%v), want the %d written over NFS", onDisk, len(got), err, len(payload))
	}

	list, err := ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil || !slices.ContainsFunc(list.Entries, func(e *csi.ListVolumesResponse_Entry) bool { return e.Volume.VolumeId == id }) {
		t.Fatalf("ListVolumes lacks %s: %v", id, err)
	}
	if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(onDisk)); !os.IsNotExist(err) {
		t.Fatalf("volume directory left after delete: %v", err)
	}
	if exps := f.sim.Server.Exports(); len(exps) != 0 {
		t.Fatalf("exports left after delete: %+v", exps)
	}
	var quotas struct {
		Quotas []struct {
			Path string `json:"path"`
		} `json:"quotas"`
	}
	f.papi(t, "/platform/1/quota/quotas", &quotas)
	for _, q := range quotas.Quotas {
		if q.Path == exportPath {
			t.Fatalf("quota on %s left after delete", q.Path)
		}
	}
}

// TestSimNodeStandInAccessZone: the node stages a zone volume (its export looked up in its
// zone), writes, and the data is in the zone's tree; a volume of the default zone, with an
// ID of the old form, works beside it.
func TestSimNodeStandInAccessZone(t *testing.T) {
	harness.RequireRoot(t, "the NFS stand-in's bind mounts")
	f := startZoneSim(t, nil)
	t.Setenv(isilon.StandInEnv, f.sim.Root)
	st, err := isilon.NewStager(&f.be)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	old := f.create(t, "pvc-system", "shop", 8*mib)
	if old.ID.Location != "" || !strings.HasPrefix(old.Context[isilon.CtxExportPath], "/ifs/data/shiphold/shop/") {
		t.Fatalf("default-zone volume %s at %s", old.ID, old.Context[isilon.CtxExportPath])
	}
	v, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-node-zone", Tenant: "shop", RequiredBytes: 8 * mib,
		Parameters: map[string]string{isilon.ParamAccessZone: "zoneA"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, vol := range []*backend.Volume{old, v} {
		staging := t.TempDir()
		req := &backend.StageRequest{ID: vol.ID, StagingPath: staging, Context: vol.Context}
		if err := st.StageVolume(ctx, req); backend.CodeOf(err) != backend.FailedPrecondition {
			t.Fatalf("stage of %s before publish: %v", vol.ID, err)
		}
		pc, err := f.ctrl.PublishVolume(ctx, vol.ID, backend.Node{Name: "node-1", Address: "127.0.0.1"}, backend.PublishAccess{}, vol.Context, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.PublishContext = pc
		if err := st.StageVolume(ctx, req); err != nil {
			t.Fatal(err)
		}
		src, _, err := st.PublishSource(ctx, vol.ID, staging)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "hello"), []byte(vol.ID.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := st.UnstageVolume(ctx, vol.ID, staging); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(f.realDir(vol.Context[isilon.CtxExportPath]), "hello")); err != nil || string(b) != vol.ID.String() {
			t.Fatalf("written through the mount of %s, read in the simulator: %q %v", vol.ID, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.sim.Root, "zoneA", "shiphold", "shop", "csi-vol-"+v.ID.Hash, "hello")); err != nil {
		t.Fatalf("the zone volume's data is not below the zone's base path: %v", err)
	}
}

// TestSimAccessZoneOutsideBaseRefused: a zone whose isiPath lies outside the zone's base
// path (as the array reports it) is refused before anything is made there, and the error
// names the zone's base, so the admin can fix isilon.zones.
func TestSimAccessZoneOutsideBaseRefused(t *testing.T) {
	f := startZoneSim(t, nil)
	f.be.Section.(*isilon.Config).Zones = []isilon.Zone{{Name: "zoneA", Key: "za", IsiPath: "/ifs/data/elsewhere"}}
	ctrl, err := isilon.NewController(&f.be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctrl.Close)
	_, err = ctrl.CreateVolume(ctxT(t), &backend.VolumeRequest{Name: "pvc-out", Tenant: "shop", RequiredBytes: mib,
		Parameters: map[string]string{isilon.ParamAccessZone: "zoneA"}})
	if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), "base path /ifs/zoneA") {
		t.Fatalf("create in a zone outside its base: %v, want FAILED_PRECONDITION naming the zone's base", err)
	}
	if exps := f.sim.Server.Exports(); len(exps) != 0 {
		t.Fatalf("an export was made outside its zone: %+v", exps)
	}
	if _, err := os.Stat(filepath.Join(f.sim.Root, "data", "elsewhere")); !os.IsNotExist(err) {
		t.Fatalf("a refused zone left its directory: %v", err)
	}
}
