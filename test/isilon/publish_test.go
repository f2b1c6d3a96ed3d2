package isilontest

import (
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/test/onefssim"
)

// clientsOf is every client of the export of dir, placeholder excluded.
func (f *fixture) clientsOf(t *testing.T, dir string) []string {
	t.Helper()
	e := f.exportOf(dir)
	if e == nil {
		t.Fatalf("no export of %s", dir)
	}
	var out []string
	for _, l := range [][]string{e.Clients, e.RootClients, e.ReadWriteClients, e.ReadOnlyClients} {
		for _, c := range l {
			if c != isilon.NoAccessClient && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestSimNodeAddressChange: a node published at A comes back at B (new IP, same name).
// The grant to A must not outlive the node's unpublish, whatever address the node ID
// carries then.
func TestSimNodeAddressChange(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	v, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-move", Tenant: "shop", RequiredBytes: 8 * mib,
		Parameters: map[string]string{isilon.ParamRootClientEnabled: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := v.Context[isilon.CtxExportPath]
	atA := backend.Node{Name: "node-1", Address: "10.0.0.1"}
	atB := backend.Node{Name: "node-1", Address: "10.0.0.2"}
	other := backend.Node{Name: "node-2", Address: "10.0.0.9"}
	for _, n := range []backend.Node{atA, other} {
		if _, err := f.ctrl.PublishVolume(ctx, v.ID, n, backend.PublishAccess{}, v.Context, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The node restarts with a new address and publishes again: B replaces A.
	if _, err := f.ctrl.PublishVolume(ctx, v.ID, atB, backend.PublishAccess{}, v.Context, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.clientsOf(t, dir); !slices.Equal(got, []string{"10.0.0.2", "10.0.0.9"}) {
		t.Fatalf("clients after the node republished from B: %v, want A replaced by B", got)
	}
	if err := f.ctrl.UnpublishVolume(ctx, v.ID, atB, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.clientsOf(t, dir); !slices.Equal(got, []string{"10.0.0.9"}) {
		t.Fatalf("clients after unpublish of node-1: %v, want only node-2's", got)
	}
	// Published at A, detached after the IP changed (the node ID now says B): A goes.
	if _, err := f.ctrl.PublishVolume(ctx, v.ID, atA, backend.PublishAccess{ReadOnly: true}, v.Context, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.ctrl.UnpublishVolume(ctx, v.ID, atB, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.clientsOf(t, dir); !slices.Equal(got, []string{"10.0.0.9"}) {
		t.Fatalf("clients after unpublish with the new address: %v, want A gone", got)
	}
	stale, err := f.ctrl.StaleClients(ctx, nil)
	if err != nil || len(stale) != 0 {
		t.Fatalf("StaleClients = %+v %v, want none", stale, err)
	}
}

// TestSimStaleClientsReported: export clients no grant record accounts for (added by hand,
// or left by a driver before grant records) are reported.
func TestSimStaleClientsReported(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	v := f.create(t, "pvc-stale", "shop", 8*mib)
	if _, err := f.ctrl.PublishVolume(ctx, v.ID, backend.Node{Name: "node-1", Address: "10.0.0.1"}, backend.PublishAccess{}, v.Context, nil); err != nil {
		t.Fatal(err)
	}
	e := f.exportOf(v.Context[isilon.CtxExportPath])
	code, body := rawPUT(t, f, "/platform/2/protocols/nfs/exports/"+v.Context[isilon.CtxExportID],
		`{"clients":["10.0.0.1","10.9.9.9"]}`)
	if code != 204 {
		t.Fatalf("adding a client by hand: %d %s", code, body)
	}
	stale, err := f.ctrl.StaleClients(ctx, nil)
	if err != nil || len(stale) != 1 || stale[0].Client != "10.9.9.9" || stale[0].Volume != v.ID || stale[0].ExportID != e.ID {
		t.Fatalf("StaleClients = %+v %v, want 10.9.9.9 on export %d", stale, err, e.ID)
	}
}

// TestDriverNodeAddressChange: the same through the CSI socket with name@address node IDs.
func TestDriverNodeAddressChange(t *testing.T) {
	sim, d := startDriver(t)
	cc := d.Controller()
	ctx := ctxT(t)
	v, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-csi-move", Parameters: map[string]string{"backend": "isi"},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap}, CapacityRange: &csi.CapacityRange{RequiredBytes: mib}})
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	pub := func(node string) {
		if _, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node,
			VolumeCapability: mountCap, VolumeContext: v.GetVolume().GetVolumeContext()}); err != nil {
			t.Fatal(err)
		}
	}
	pub("node-1@10.0.0.1")
	pub("node-1@10.0.0.2")
	if _, err := cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "node-1@10.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	for _, e := range sim.Server.Exports() {
		for _, l := range [][]string{e.Clients, e.RootClients, e.ReadWriteClients, e.ReadOnlyClients} {
			if slices.Contains(l, "10.0.0.1") || slices.Contains(l, "10.0.0.2") {
				t.Fatalf("export %d still grants %v after node-1 was unpublished", e.ID, l)
			}
		}
	}
}

// TestSimGrantSurvivesAFailedExportUpdate: the node's new address is recorded before the
// export changes, so when the export update fails halfway, an unpublish still removes
// both the old and the new address.
func TestSimGrantSurvivesAFailedExportUpdate(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	v := f.create(t, "pvc-crash", "shop", 8*mib)
	dir := v.Context[isilon.CtxExportPath]
	if _, err := f.ctrl.PublishVolume(ctx, v.ID, backend.Node{Name: "node-1", Address: "10.0.0.1"}, backend.PublishAccess{}, v.Context, nil); err != nil {
		t.Fatal(err)
	}
	// The export update takes effect but its reply is lost.
	f.sim.Server.InjectFault(onefssim.Fault{Method: "PUT", Path: "/platform/2/protocols/nfs/exports/", Status: 500,
		Code: "AEC_EXCEPTION", Message: "lost reply", After: true})
	if _, err := f.ctrl.PublishVolume(ctx, v.ID, backend.Node{Name: "node-1", Address: "10.0.0.2"}, backend.PublishAccess{}, v.Context, nil); err == nil {
		t.Fatal("the fault did not fire")
	}
	if err := f.ctrl.UnpublishVolume(ctx, v.ID, backend.Node{Name: "node-1", Address: "10.0.0.3"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.clientsOf(t, dir); len(got) != 0 {
		t.Fatalf("clients left after the unpublish: %v", got)
	}
}
