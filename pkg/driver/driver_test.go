package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

type fixture struct {
	d      *Driver
	rbd    *fakeController
	nfs    *fakeController
	stager *fakeStager
	mnt    *mount.FakeMounter
}

func newFixture(t *testing.T, tenants config.Tenants) *fixture {
	t.Helper()
	f := newUnreadFixture(t, tenants)
	// What Serve does before it answers: read every backend's tenant usage once.
	if err := f.d.ledger.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

// newUnreadFixture is a fixture whose ledger has read no backend yet, as while a
// controller's first reading of a large backend runs.
func newUnreadFixture(t *testing.T, tenants config.Tenants) *fixture {
	t.Helper()
	cfg := &config.Config{
		Backends: []config.Backend{{Name: "ceph-rbd", Kind: "rbd"}, {Name: "isilon", Kind: "isilon"}},
		Tenants:  tenants,
	}
	f := &fixture{rbd: newFake("ceph-rbd", "rbd"), nfs: newFake("isilon", "isilon"), stager: &fakeStager{staged: map[string]string{}}, mnt: mount.NewFakeMounter(nil)}
	d, err := Compose(ModeAll, Options{Kinds: registry.Kinds(),
		Name: "shiphold.csi.io", Version: "test", NodeName: "node1", NodeAddress: "10.0.0.5", Config: cfg,
		Controllers: map[string]backend.Controller{"ceph-rbd": f.rbd, "isilon": fakePublisher{f.nfs}},
		Stagers:     map[string]backend.Stager{"ceph-rbd": f.stager, "isilon": f.stager},
		Mounter:     f.mnt,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	return f
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func blockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func wantCode(t *testing.T, err error, code codes.Code, msgPart string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("code = %v (%v), want %v", status.Code(err), err, code)
	}
	if msgPart != "" && !strings.Contains(err.Error(), msgPart) {
		t.Fatalf("message %q does not mention %q", err.Error(), msgPart)
	}
}

const rwo = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
const rwx = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER

func TestCreateVolumeValidation(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	cases := []struct {
		name string
		req  *csi.CreateVolumeRequest
		code codes.Code
		msg  string
	}{
		{"no name", &csi.CreateVolumeRequest{VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}, codes.InvalidArgument, "name is required"},
		{"no caps", &csi.CreateVolumeRequest{Name: "v", Parameters: map[string]string{"backend": "ceph-rbd"}}, codes.InvalidArgument, "capabilities are required"},
		{"no backend", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}}, codes.InvalidArgument, `"backend" is required`},
		{"unknown backend", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "nope"}}, codes.InvalidArgument, `backend "nope" is not in the driver config`},
		{"unknown parameter", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd", "poool": "x"}}, codes.InvalidArgument, "poool"},
		{"rwx fs on rbd", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwx)}, Parameters: map[string]string{"backend": "ceph-rbd"}}, codes.InvalidArgument, "single-node"},
		{"block on isilon", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{blockCap(rwo)}, Parameters: map[string]string{"backend": "isilon"}}, codes.InvalidArgument, "block access type needs an rbd"},
		{"bad fstype", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "zfs"}}, AccessMode: &csi.VolumeCapability_AccessMode{Mode: rwo}}}, Parameters: map[string]string{"backend": "ceph-rbd"}}, codes.InvalidArgument, "zfs"},
		{"negative size", &csi.CreateVolumeRequest{Name: "v", CapacityRange: &csi.CapacityRange{RequiredBytes: -1}, VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}, codes.InvalidArgument, "negative"},
		{"limit below required", &csi.CreateVolumeRequest{Name: "v", CapacityRange: &csi.CapacityRange{RequiredBytes: 10, LimitBytes: 5}, VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}, codes.InvalidArgument, "exceeds limit"},
		{"bad tenant", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd", backend.ParamPVCNamespace: "Bad_NS"}}, codes.InvalidArgument, "tenant"},
		{"source snapshot malformed", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "junk"}}}}, codes.NotFound, "junk"},
		{"source on other backend", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volid.Volume{Backend: "isilon", Tenant: "t", Hash: volid.Hash("x")}.String()}}}}, codes.InvalidArgument, "shipholdctl migrate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.d.CreateVolume(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	if len(f.rbd.vols) != 0 {
		t.Fatalf("a rejected request created a volume: %v", f.rbd.vols)
	}
}

func TestCreateVolumeTenantAndIdempotency(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	req := &csi.CreateVolumeRequest{Name: "pvc-1", CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)},
		Parameters:         map[string]string{"backend": "ceph-rbd", backend.ParamPVCNamespace: "shop", backend.ParamPVCName: "data"}}
	r1, err := f.d.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	id, err := volid.ParseVolume(r1.Volume.VolumeId)
	if err != nil || id.Tenant != "shop" || id.Backend != "ceph-rbd" {
		t.Fatalf("volume ID %q (%v) does not carry tenant shop", r1.Volume.VolumeId, err)
	}
	r2, err := f.d.CreateVolume(ctx, req)
	if err != nil || r2.Volume.VolumeId != r1.Volume.VolumeId {
		t.Fatalf("retry gave %v, %v", r2, err)
	}
	req.CapacityRange.RequiredBytes = 2 << 20
	_, err = f.d.CreateVolume(ctx, req)
	wantCode(t, err, codes.AlreadyExists, "exists")

	noNS := &csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}
	r3, err := f.d.CreateVolume(ctx, noNS)
	if err != nil || !strings.Contains(r3.Volume.VolumeId, ":"+DefaultTenant+":") || r3.Volume.CapacityBytes != DefaultVolumeBytes {
		t.Fatalf("no-namespace volume: %v %v", r3, err)
	}
}

func TestTenantQuota(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 2, MaxBytes: 3 << 20}})
	ctx := context.Background()
	mk := func(name string, size int64, ns string) error {
		_, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
			VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)},
			Parameters:         map[string]string{"backend": "ceph-rbd", backend.ParamPVCNamespace: ns}})
		return err
	}
	if err := mk("a", 1<<20, "shop"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, mk("big", 3<<20, "shop"), codes.ResourceExhausted, "quota of")
	if err := mk("b", 1<<20, "shop"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, mk("c", 1<<20, "shop"), codes.ResourceExhausted, "quota is 2 volumes")
	if err := mk("a", 1<<20, "shop"); err != nil {
		t.Fatalf("an idempotent retry is refused by the quota: %v", err)
	}
	if err := mk("c", 1<<20, "blog"); err != nil {
		t.Fatalf("another tenant is limited by shop's usage: %v", err)
	}
}

func TestConcurrentCallIsAborted(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	f.rbd.block = make(chan struct{})
	f.rbd.entered = make(chan struct{}, 1)
	req := &csi.CreateVolumeRequest{Name: "pvc-slow", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}
	done := make(chan error, 1)
	go func() { _, err := f.d.CreateVolume(context.Background(), req); done <- err }()
	<-f.rbd.entered
	_, err := f.d.CreateVolume(context.Background(), req)
	wantCode(t, err, codes.Aborted, "already in progress")
	close(f.rbd.block)
	f.rbd.entered = nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBackendErrorsMapToCSICodes(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	req := &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}
	cases := []struct {
		err  error
		code codes.Code
	}{
		{backend.Errorf(backend.Unavailable, "monitors 10.0.0.1:6789 unreachable"), codes.Unavailable},
		{backend.Errorf(backend.InvalidArgument, `secret is missing key "userKey"`), codes.InvalidArgument},
		{backend.Errorf(backend.ResourceExhausted, "pool full"), codes.ResourceExhausted},
		{backend.Errorf(backend.Pending, "clone in progress"), codes.Aborted},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("unclassified"), codes.Internal},
	}
	for _, tc := range cases {
		f.rbd.failWith = tc.err
		_, err := f.d.CreateVolume(context.Background(), req)
		wantCode(t, err, tc.code, tc.err.Error())
	}
}

func TestDeleteVolume(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	if _, err := f.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "not-ours"}); err != nil {
		t.Fatalf("a malformed ID names no volume of ours; delete must succeed: %v", err)
	}
	_, err := f.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{})
	wantCode(t, err, codes.InvalidArgument, "required")
	gone := volid.Volume{Backend: "removed", Tenant: "t", Hash: volid.Hash("x")}.String()
	_, err = f.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: gone})
	wantCode(t, err, codes.FailedPrecondition, "restore the backend")
	r, _ := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	for i := 0; i < 2; i++ {
		if _, err := f.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId}); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	if len(f.rbd.vols) != 0 {
		t.Fatal("volume not deleted")
	}
}

func TestPublishRoutesToPublisherOnly(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	nfsVol, _ := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "n", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwx)}, Parameters: map[string]string{"backend": "isilon"}})
	rbdVol, _ := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "r", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	node := f.d.NodeID()
	resp, err := f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: nfsVol.Volume.VolumeId, NodeId: node, VolumeCapability: mountCap(rwx)})
	if err != nil || resp.PublishContext["client"] != "10.0.0.5" {
		t.Fatalf("isilon publish: %v %v", resp, err)
	}
	if _, err := f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: rbdVol.Volume.VolumeId, NodeId: node, VolumeCapability: mountCap(rwo)}); err != nil {
		t.Fatalf("rbd publish is a no-op: %v", err)
	}
	_, err = f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: nfsVol.Volume.VolumeId, NodeId: "some-fake-node", VolumeCapability: mountCap(rwx)})
	wantCode(t, err, codes.NotFound, "name@address")
	_, err = f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "junk", NodeId: node, VolumeCapability: mountCap(rwx)})
	wantCode(t, err, codes.NotFound, "junk")
	if _, err := f.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: nfsVol.Volume.VolumeId, NodeId: node}); err != nil || len(f.nfs.published) != 0 {
		t.Fatalf("unpublish: %v, left %v", err, f.nfs.published)
	}
}

func TestListVolumesPaging(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		if _, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: n, VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	token := ""
	for pages := 0; ; pages++ {
		resp, err := f.d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Entries) > 2 {
			t.Fatalf("page of %d entries", len(resp.Entries))
		}
		for _, e := range resp.Entries {
			seen[e.Volume.VolumeId] = true
		}
		if token = resp.NextToken; token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 5 {
		t.Fatalf("saw %d volumes, want 5", len(seen))
	}
	_, err := f.d.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "zzz"})
	wantCode(t, err, codes.Aborted, "starting_token")
}

func TestSnapshotsAndClone(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	v, _ := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "src", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	s, err := f.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: v.Volume.VolumeId})
	if err != nil || s.Snapshot.SourceVolumeId != v.Volume.VolumeId || !s.Snapshot.ReadyToUse {
		t.Fatalf("snapshot: %v %v", s, err)
	}
	_, err = f.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "junk"})
	wantCode(t, err, codes.NotFound, "junk")
	c, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "clone", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.Snapshot.SnapshotId}}}})
	if err != nil || c.Volume.ContentSource.GetSnapshot().GetSnapshotId() != s.Snapshot.SnapshotId {
		t.Fatalf("clone: %v %v", c, err)
	}
	l, err := f.d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: v.Volume.VolumeId})
	if err != nil || len(l.Entries) != 1 {
		t.Fatalf("list by source: %v %v", l, err)
	}
	l, err = f.d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: "junk"})
	if err != nil || len(l.Entries) != 0 {
		t.Fatalf("list by junk ID must be empty: %v %v", l, err)
	}
	if _, err := f.d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: "junk"}); err != nil {
		t.Fatalf("delete junk snapshot: %v", err)
	}
}

func TestNodePublishUnpublish(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "pods", "target")
	id := volid.Volume{Backend: "ceph-rbd", Tenant: "shop", Location: "1", Hash: volid.Hash("x")}.String()

	_, err := f.d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap(rwo)})
	wantCode(t, err, codes.FailedPrecondition, "not staged")

	if _, err := f.d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mountCap(rwo)}); err != nil {
		t.Fatal(err)
	}
	f.stager.repairs = 0
	for i := 0; i < 2; i++ {
		if _, err := f.d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap(rwo), Readonly: true}); err != nil {
			t.Fatal(err)
		}
	}
	mps, _ := f.mnt.List()
	if len(mps) != 1 || mps[0].Device != staging+"/fs" || mps[0].Path != target || !contains(mps[0].Opts, "ro") {
		t.Fatalf("mounts after two publishes: %+v", mps)
	}
	if f.stager.repairs != 2 {
		t.Fatalf("publish did not check the staged mount (repairs=%d)", f.stager.repairs)
	}
	for i := 0; i < 2; i++ {
		if _, err := f.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	if mps, _ := f.mnt.List(); len(mps) != 0 {
		t.Fatalf("left mounted: %+v", mps)
	}
	_, err = f.d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "junk", StagingTargetPath: staging, VolumeCapability: mountCap(rwo)})
	wantCode(t, err, codes.NotFound, "junk")
	_, err = f.d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: filepath.Join(dir, "missing")})
	wantCode(t, err, codes.NotFound, "does not exist")
	st, err := f.d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: dir})
	if err != nil || len(st.Usage) != 2 || st.Usage[0].Total <= 0 {
		t.Fatalf("stats: %v %v", st, err)
	}
	h, err := f.d.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: filepath.Join(dir, "missing")})
	if err != nil || len(h.VolumeHealth.HealthStatuses) != 1 || h.VolumeHealth.HealthStatuses[0].Status != csi.VolumeHealthErrorType_INACCESSIBLE {
		t.Fatalf("health of a missing path: %v %v", h, err)
	}
}

func TestNodeInfoAndProbe(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	info, _ := f.d.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if info.NodeId != "node1@10.0.0.5" {
		t.Fatalf("node ID %q", info.NodeId)
	}
	f.rbd.failWith = backend.Errorf(backend.Unavailable, "down")
	p, err := f.d.Probe(context.Background(), &csi.ProbeRequest{})
	if err != nil || !p.Ready.GetValue() {
		t.Fatalf("a backend outage must not fail Probe: %v %v", p, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	f.d.probeBackends(ctx)
	if r := f.d.Reachability(); r["ceph-rbd"] == nil || r["isilon"] != nil {
		t.Fatalf("reachability: %v", r)
	}
}

func TestBackendOf(t *testing.T) {
	id := volid.Volume{Backend: "ceph-rbd", Tenant: "t", Hash: volid.Hash("x")}.String()
	cases := map[string]any{
		"ceph-rbd": &csi.NodeStageVolumeRequest{VolumeId: id},
		"isilon":   &csi.CreateVolumeRequest{Parameters: map[string]string{"backend": "isilon"}},
		"none":     &csi.DeleteVolumeRequest{VolumeId: "junk"},
	}
	for want, req := range cases {
		if got := BackendOf("", req); got != want {
			t.Fatalf("BackendOf(%T) = %q, want %q", req, got, want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRepairStagedFindsKubeletStagedVolumes(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	kubelet := t.TempDir()
	ours := volid.Volume{Backend: "ceph-rbd", Tenant: "t", Location: "1", Hash: volid.Hash("a")}.String()
	write := func(dir, driverName, handle string, staged bool) {
		p := filepath.Join(kubelet, "plugins", "kubernetes.io", "csi", driverName, dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if staged {
			os.Mkdir(filepath.Join(p, "globalmount"), 0o755)
		}
		os.WriteFile(filepath.Join(p, "vol_data.json"), []byte(`{"driverName":"`+driverName+`","volumeHandle":"`+handle+`"}`), 0o644)
	}
	write("h1", "shiphold.csi.io", ours, true)
	write("h2", "other.csi.io", ours, true)
	write("h3", "shiphold.csi.io", "not-an-id", true)
	write("h4", "shiphold.csi.io", ours, false)
	if n := f.d.RepairStaged(context.Background(), kubelet); n != 1 || f.stager.repairs != 1 {
		t.Fatalf("checked %d volumes, %d repairs; want exactly the one staged shiphold volume", n, f.stager.repairs)
	}
}

func TestListVolumesTokenSurvivesDeletion(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c", "d"} {
		if _, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: n, VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}); err != nil {
			t.Fatal(err)
		}
	}
	p1, err := f.d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2})
	if err != nil || len(p1.Entries) != 2 {
		t.Fatalf("page 1: %v %v", p1, err)
	}
	// Delete the last volume of page 1, then continue: nothing repeats, nothing is lost.
	if _, err := f.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: p1.Entries[1].Volume.VolumeId}); err != nil {
		t.Fatal(err)
	}
	p2, err := f.d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: p1.NextToken})
	if err != nil || len(p2.Entries) != 2 || p2.NextToken != "" {
		t.Fatalf("page 2 after deleting the token's volume: %v %v", p2, err)
	}
	seen := map[string]bool{p1.Entries[0].Volume.VolumeId: true}
	for _, e := range p2.Entries {
		if seen[e.Volume.VolumeId] {
			t.Fatalf("%s listed twice", e.Volume.VolumeId)
		}
		seen[e.Volume.VolumeId] = true
	}
	if len(seen) != 3 {
		t.Fatalf("listed %d of the 3 remaining volumes", len(seen))
	}
}

func TestGetSnapshot(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	v, _ := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "src", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	s, _ := f.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: v.Volume.VolumeId})
	got, err := f.d.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: s.Snapshot.SnapshotId})
	if err != nil || got.Snapshot.SnapshotId != s.Snapshot.SnapshotId {
		t.Fatalf("GetSnapshot: %v %v", got, err)
	}
	_, err = f.d.GetSnapshot(ctx, &csi.GetSnapshotRequest{})
	wantCode(t, err, codes.InvalidArgument, "required")
	_, err = f.d.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: "junk"})
	wantCode(t, err, codes.NotFound, "junk")
	f.d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.Snapshot.SnapshotId})
	_, err = f.d.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: s.Snapshot.SnapshotId})
	wantCode(t, err, codes.NotFound, "")
}

func TestSingleNodeSingleWriterRefusesSecondTarget(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	dir := t.TempDir()
	staging := filepath.Join(dir, "staging")
	id := volid.Volume{Backend: "ceph-rbd", Tenant: "shop", Location: "1", Hash: volid.Hash("x")}.String()
	rwop := mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	if _, err := f.d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: rwop}); err != nil {
		t.Fatal(err)
	}
	publish := func(target string) error {
		_, err := f.d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)})
		return err
	}
	first, second := filepath.Join(dir, "t1"), filepath.Join(dir, "t2")
	if err := publish(first); err != nil {
		t.Fatal(err)
	}
	if err := publish(first); err != nil {
		t.Fatalf("republishing the same target must succeed: %v", err)
	}
	wantCode(t, publish(second), codes.FailedPrecondition, "already published at "+first)
	if _, err := f.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: first}); err != nil {
		t.Fatal(err)
	}
	if err := publish(second); err != nil {
		t.Fatalf("after unpublishing the first target the second must work: %v", err)
	}
	f.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: second})
	if _, err := f.d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(staging, targetsFile)); !os.IsNotExist(err) {
		t.Fatalf("unstage left the targets record: %v", err)
	}
}

// The node learns the access mode and a read-only ControllerPublish when it stages.
func TestStageCarriesAccessModeAndPublishReadOnly(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "staging")
	v, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "rox", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	if err != nil {
		t.Fatal(err)
	}
	id := v.Volume.VolumeId
	for _, tc := range []struct {
		mode      csi.VolumeCapability_AccessMode_Mode
		published bool
		want      backend.AccessMode
		readOnly  bool
	}{
		// a reader-only mode is a read-only publish even without the flag (csi-attacher never sets it for ROX)
		{csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, false, backend.AccessMode{MultiNode: true, ReaderOnly: true}, true},
		{csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, false, backend.AccessMode{ReaderOnly: true}, true},
		{rwo, true, backend.AccessMode{}, true},
		{rwo, false, backend.AccessMode{}, false},
		{csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER, false, backend.AccessMode{MultiNode: true}, false},
	} {
		pub, err := f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node1@10.0.0.5",
			VolumeCapability: blockCap(tc.mode), Readonly: tc.published})
		if err != nil {
			t.Fatalf("%v publish: %v", tc.mode, err)
		}
		if _, err := f.d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
			VolumeCapability: blockCap(tc.mode), PublishContext: pub.PublishContext}); err != nil {
			t.Fatalf("%v stage: %v", tc.mode, err)
		}
		if got := f.stager.last; got.Access != tc.want || got.ReadOnly != tc.readOnly {
			t.Fatalf("%v (published read-only %v): stage got access %+v read-only %v", tc.mode, tc.published, got.Access, got.ReadOnly)
		}
		f.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "node1@10.0.0.5"})
	}
}

// TestContentSourceStaysInItsTenant: a volume is never seeded from another tenant's volume
// or snapshot, on any backend (the Isilon backend once copied them), and the backend is
// not asked at all.
func TestContentSourceStaysInItsTenant(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	for _, be := range []string{"ceph-rbd", "isilon"} {
		params := func(ns string) map[string]string {
			return map[string]string{"backend": be, backend.ParamPVCNamespace: ns}
		}
		v, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "shop-data", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: params("shop")})
		if err != nil {
			t.Fatal(err)
		}
		s, err := f.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "shop-snap", SourceVolumeId: v.Volume.VolumeId})
		if err != nil {
			t.Fatal(err)
		}
		sources := map[string]*csi.VolumeContentSource{
			"volume":   {Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.Volume.VolumeId}}},
			"snapshot": {Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.Snapshot.SnapshotId}}},
		}
		for what, src := range sources {
			_, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "blog-from-shop-" + what, VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)},
				Parameters: params("blog"), VolumeContentSource: src})
			wantCode(t, err, codes.InvalidArgument, `tenant "shop"`)
			if _, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "shop-from-shop-" + what, VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)},
				Parameters: params("shop"), VolumeContentSource: src}); err != nil {
				t.Fatalf("%s: a clone within the tenant: %v", be, err)
			}
		}
		for _, fake := range []*fakeController{f.rbd, f.nfs} {
			for _, vol := range fake.vols {
				if vol.Context["tenant"] == "blog" {
					t.Fatalf("%s: the backend made %s for tenant blog", be, vol.ID)
				}
			}
		}
	}
}

// TestListFailuresKeepTheirCode: the calls that span every backend answer a backend's
// failure with its own code, as every other call does, not always UNAVAILABLE. (The quota
// check of CreateVolume lists nothing: it reads the ledger, see quota_test.go.)
func TestListFailuresKeepTheirCode(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 5}})
	cases := []struct {
		err  error
		code codes.Code
	}{
		{backend.Errorf(backend.NotFound, "pool rbd does not exist"), codes.NotFound},
		{backend.Errorf(backend.FailedPrecondition, "permission denied"), codes.FailedPrecondition},
		{backend.Errorf(backend.Unavailable, "monitors unreachable"), codes.Unavailable},
		{fmt.Errorf("listing: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("unclassified"), codes.Internal},
	}
	for _, tc := range cases {
		f.nfs.listFailWith = tc.err
		_, err := f.d.ListVolumes(context.Background(), &csi.ListVolumesRequest{})
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), `backend "isilon"`) {
			t.Errorf("ListVolumes with %v: %v, want %v naming the backend", tc.err, err, tc.code)
		}
		_, err = f.d.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{})
		if status.Code(err) != tc.code {
			t.Errorf("ListSnapshots with %v: %v, want %v", tc.err, err, tc.code)
		}
	}
}
