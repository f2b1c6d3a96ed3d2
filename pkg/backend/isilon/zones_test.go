package isilon

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// zoneA is the extra access zone of the zone tests; the fake's zoneA has base /ifs/zoneA.
var zoneA = Zone{Name: "zoneA", Key: "za", IsiPath: "/ifs/zoneA/sh"}

func zoneController(t *testing.T) (*Controller, *fakeArray) {
	t.Helper()
	c, f, _ := testController(t)
	c.cfg.Zones = []Zone{zoneA}
	return c, f
}

func zoneReq(name string) *backend.VolumeRequest {
	r := req(name, 100)
	r.Parameters = map[string]string{ParamAccessZone: "zoneA"}
	return r
}

// exportCalls are the export calls made, each with the zone it named.
func exportCalls(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(s string) bool { return !strings.Contains(s, "Export") && !strings.HasPrefix(s, "SquashRoot") })
}

// A volume of a class with accessZone lives below the zone's isiPath, its ID carries the
// zone's key, and every export call of its life names the zone.
func TestAccessZoneVolumeLifecycle(t *testing.T) {
	c, f := zoneController(t)
	ctx := context.Background()
	v := mustCreate(t, c, zoneReq("pvc-z"))
	dir := "/ifs/zoneA/sh/shop/csi-vol-" + volid.Hash("pvc-z")
	if v.ID.Location != "za" || !strings.Contains(v.ID.String(), ":za:") {
		t.Fatalf("volume ID %s does not carry the zone key za", v.ID)
	}
	if v.Context[CtxExportPath] != dir || v.Context[CtxZone] != "zoneA" {
		t.Fatalf("volume context %v, want export path %s in zone zoneA", v.Context, dir)
	}
	if _, ok := f.dirs[dir]; !ok || f.quotas[dir] == nil || f.quotas[dir].Hard != 100 || f.quotas["/ifs/zoneA/sh/shop"] == nil {
		t.Fatalf("directory or quotas not in the zone: dirs %v quotas %v", f.dirs, f.quotas)
	}
	if _, ok := f.dirs["/ifs/data/sh/shop"]; ok {
		t.Fatal("a tenant directory was made in the default zone's tree")
	}
	node := backend.Node{Name: "n1", Address: "10.0.0.1"}
	f.takeCalls()
	pub, err := c.PublishVolume(ctx, v.ID, node, backend.PublishAccess{}, v.Context, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pub[PubExportPath] != dir {
		t.Fatalf("publish context %v", pub)
	}
	e, _ := f.ExportOf(ctx, "zoneA", dir)
	if e == nil || !slices.Contains(e.Clients, "10.0.0.1") {
		t.Fatalf("export in zoneA after publish: %+v", e)
	}
	for _, e := range f.exports {
		if e.Zone != "zoneA" {
			t.Fatalf("the volume has an export in %s: %+v", e.Zone, e)
		}
	}
	if err := c.UnpublishVolume(ctx, v.ID, node, nil); err != nil {
		t.Fatal(err)
	}
	snap, err := c.CreateSnapshot(ctx, v.ID, "snap-z", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := f.snaps[snapshotName(snap.ID.SnapHash)]; s == nil || s.Path != dir {
		t.Fatalf("snapshot of %v, want of %s", s, dir)
	}
	snaps, err := c.ListSnapshots(ctx, &v.ID)
	if err != nil || len(snaps) != 1 || snaps[0].ID != snap.ID {
		t.Fatalf("ListSnapshots of the zone volume: %v %v, want %s", snaps, err, snap.ID)
	}
	if _, _, err := c.ExpandVolume(ctx, v.ID, 200, 0, nil); err != nil || f.quotas[dir].Hard != 200 {
		t.Fatalf("expand in the zone: %v, quota %+v", err, f.quotas[dir])
	}
	if err := c.DeleteSnapshot(ctx, snap.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.dirs[dir]; ok || f.quotas[dir] != nil || len(f.exports) != 0 || len(f.snaps) != 0 {
		t.Fatalf("delete left dirs %v quotas %v exports %v snaps %v", f.dirs[dir], f.quotas[dir], f.exports, f.snaps)
	}
	for _, call := range exportCalls(f.takeCalls()) {
		if !strings.HasSuffix(call, " in zoneA") {
			t.Errorf("export call %q does not name zone zoneA", call)
		}
	}
}

// A volume ID made before zones (empty location) means the default zone and its isiPath,
// whatever zones the config lists now.
func TestAccessZoneOldIDIsDefaultZone(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	v := mustCreate(t, c, req("pvc-old", 100)) // made before zones were configured
	c.cfg.Zones = []Zone{zoneA}
	old, err := volid.ParseVolume("v1:isi:shop::" + volid.Hash("pvc-old"))
	if err != nil || old != v.ID {
		t.Fatalf("old ID %v (%v), created %v", old, err, v.ID)
	}
	dir := "/ifs/data/sh/shop/csi-vol-" + volid.Hash("pvc-old")
	f.takeCalls()
	pub, err := c.PublishVolume(ctx, old, backend.Node{Name: "n1", Address: "10.0.0.1"}, backend.PublishAccess{}, nil, nil)
	if err != nil || pub[PubExportPath] != dir {
		t.Fatalf("publish of an old ID: %v %v, want export path %s", pub, err, dir)
	}
	vols, err := c.ListVolumes(ctx, "")
	if err != nil || len(vols) != 1 || vols[0].ID != old || vols[0].Context[CtxZone] != "System" {
		t.Fatalf("ListVolumes: %v %v", vols, err)
	}
	if err := c.DeleteVolume(ctx, old, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.dirs[dir]; ok || len(f.exports) != 0 {
		t.Fatal("delete of an old ID left its directory or export")
	}
	for _, call := range exportCalls(f.takeCalls()) {
		if !strings.HasSuffix(call, " in System") {
			t.Errorf("export call %q of an old ID does not name System", call)
		}
	}
}

func TestAccessZoneErrors(t *testing.T) {
	c, f := zoneController(t)
	ctx := context.Background()
	bad := req("pvc-bad", 100)
	bad.Parameters = map[string]string{ParamAccessZone: "zoneB"}
	_, err := c.CreateVolume(ctx, bad)
	if backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "System, zoneA") {
		t.Fatalf("unknown zone: %v, want InvalidArgument naming System, zoneA", err)
	}
	if len(f.dirs) != 0 {
		t.Fatalf("an unknown zone made directories %v", f.dirs)
	}
	gone := volid.Volume{Backend: "isi", Tenant: "shop", Location: "zq", Hash: volid.Hash("x")}
	if err := c.DeleteVolume(ctx, gone, nil); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("delete of a volume in an unlisted zone key: %v, want FailedPrecondition (never done)", err)
	}
	if _, err := c.PublishVolume(ctx, gone, backend.Node{Name: "n", Address: "10.0.0.9"}, backend.PublishAccess{}, nil, nil); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("publish in an unlisted zone key: %v", err)
	}
}

// Clones and restores stay within a zone.
func TestAccessZoneCloneAcrossZonesRefused(t *testing.T) {
	c, f := zoneController(t)
	ctx := context.Background()
	sys := mustCreate(t, c, req("pvc-sys", 100))
	snap, err := c.CreateSnapshot(ctx, sys.ID, "snap-sys", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clone := zoneReq("pvc-clone")
	clone.SourceVolume = &sys.ID
	if _, err := c.CreateVolume(ctx, clone); backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "access zone") {
		t.Fatalf("clone from System into zoneA: %v, want InvalidArgument", err)
	}
	restore := zoneReq("pvc-restore")
	restore.SourceSnapshot = &snap.ID
	if _, err := c.CreateVolume(ctx, restore); backend.CodeOf(err) != backend.InvalidArgument {
		t.Fatalf("restore from System into zoneA: %v, want InvalidArgument", err)
	}
	for d := range f.dirs {
		if strings.HasPrefix(d, "/ifs/zoneA") {
			t.Fatalf("a refused clone made %s", d)
		}
	}
	// Within the zone a clone works and stays there.
	z := mustCreate(t, c, zoneReq("pvc-z"))
	f.files[z.Context[CtxExportPath]+"/a"] = "data"
	inZone := zoneReq("pvc-z-clone")
	inZone.SourceVolume = &z.ID
	v := mustCreate(t, c, inZone)
	if v.ID.Location != "za" || f.files[v.Context[CtxExportPath]+"/a"] != "data" || !strings.HasPrefix(v.Context[CtxExportPath], "/ifs/zoneA/sh/") {
		t.Fatalf("clone within zoneA: %+v files %v", v, f.files)
	}
	zsnap, err := c.CreateSnapshot(ctx, z.ID, "snap-z", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	restoreZ := zoneReq("pvc-z-restore")
	restoreZ.SourceSnapshot = &zsnap.ID
	r := mustCreate(t, c, restoreZ)
	if r.ID.Location != "za" || !strings.HasPrefix(r.Context[CtxExportPath], "/ifs/zoneA/sh/") {
		t.Fatalf("restore within zoneA: %+v", r)
	}
}

// ListVolumes covers every zone, each volume with its zone's key.
func TestAccessZoneListVolumes(t *testing.T) {
	c, _ := zoneController(t)
	a := mustCreate(t, c, req("pvc-a", 100))
	b := mustCreate(t, c, zoneReq("pvc-b"))
	vols, err := c.ListVolumes(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range vols {
		ids = append(ids, v.ID.String())
	}
	slices.Sort(ids)
	want := []string{a.ID.String(), b.ID.String()}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("ListVolumes %v, want %v", ids, want)
	}
	mine, err := c.ListVolumes(context.Background(), "shop")
	if err != nil || len(mine) != 2 {
		t.Fatalf("ListVolumes(shop): %d volumes, %v", len(mine), err)
	}
}

// The node finds a zone volume's export path from its ID when no context carries it (a
// hand-written PV).
func TestAccessZoneStagerExportPath(t *testing.T) {
	s, _ := testStager(t)
	z := zoneA
	z.NFSServer = "zonea.sc.example"
	s.cfg.Zones = []Zone{z}
	id := volid.Volume{Backend: "isi", Tenant: "shop", Location: "za", Hash: volid.Hash("v")}
	src, err := s.source(&backend.StageRequest{ID: id})
	if err != nil || src != "zonea.sc.example:/ifs/zoneA/sh/shop/csi-vol-"+id.Hash {
		t.Fatalf("source %q %v", src, err)
	}
	id.Location = "zq"
	if _, err := s.source(&backend.StageRequest{ID: id}); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("unlisted zone key: %v", err)
	}
}

// A zone the array lacks, or whose isiPath lies outside the zone's base path, is refused
// before anything is made in it; the check is made once per process.
func TestAccessZoneCheckedOnTheArray(t *testing.T) {
	testCases := []struct {
		name string
		zone Zone
		want string // "" for success
	}{
		{name: "within base", zone: zoneA},
		{name: "outside base", zone: Zone{Name: "zoneA", Key: "za", IsiPath: "/ifs/data/other"}, want: "not within the access zone's base path /ifs/zoneA"},
		{name: "no such zone", zone: Zone{Name: "zoneB", Key: "zb", IsiPath: "/ifs/zoneB/sh"}, want: "does not exist on the array"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			c, f, _ := testController(t)
			c.cfg.Zones = []Zone{tc.zone}
			r := req("pvc-1", 100)
			r.Parameters = map[string]string{ParamAccessZone: tc.zone.Name}
			_, err := c.CreateVolume(context.Background(), r)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				r2 := req("pvc-2", 100)
				r2.Parameters = r.Parameters
				mustCreate(t, c, r2)
				checks := 0
				for _, call := range f.takeCalls() {
					if call == "ZoneBase "+tc.zone.Name {
						checks++
					}
				}
				if checks != 1 {
					t.Fatalf("the zone was checked %d times in two creates, want once", checks)
				}
				return
			}
			if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: %v, want FailedPrecondition saying %q", err, tc.want)
			}
			if len(f.dirs) != 0 || len(f.quotas) != 0 || len(f.exports) != 0 {
				t.Fatalf("a refused zone left dirs %v quotas %v exports %v", f.dirs, f.quotas, f.exports)
			}
		})
	}
}

// A zone's volumes are mounted from the zone's nfsServer (its SmartConnect name) unless the
// class names one; the default zone keeps the backend's.
func TestAccessZoneNFSServer(t *testing.T) {
	c, _, _ := testController(t)
	z := zoneA
	z.NFSServer = "zonea.sc.example"
	c.cfg.Zones = []Zone{z}
	ctx := context.Background()
	v := mustCreate(t, c, zoneReq("pvc-z"))
	if v.Context[CtxNFSServer] != "zonea.sc.example" {
		t.Fatalf("zone volume's nfsServer %q, want the zone's", v.Context[CtxNFSServer])
	}
	pub, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1", Address: "10.0.0.1"}, backend.PublishAccess{}, nil, nil)
	if err != nil || pub[PubNFSServer] != "zonea.sc.example" {
		t.Fatalf("publish without context: %v %v, want the zone's server", pub, err)
	}
	own := zoneReq("pvc-own")
	own.Parameters[ParamNFSServer] = "other.example"
	if v := mustCreate(t, c, own); v.Context[CtxNFSServer] != "other.example" {
		t.Fatalf("class nfsServer not honoured: %q", v.Context[CtxNFSServer])
	}
	if v := mustCreate(t, c, req("pvc-sys", 100)); v.Context[CtxNFSServer] != "nfs.example" {
		t.Fatalf("default zone's server %q, want the backend's", v.Context[CtxNFSServer])
	}
}

// A legacy directory of an access zone is adopted with its export in that zone: the export
// found there is kept, the adopted ID carries the zone's key, and publish grants in the zone.
func TestAccessZoneAdopt(t *testing.T) {
	c, f := zoneController(t)
	ctx := context.Background()
	legacy := "/ifs/zoneA/legacy/site7"
	f.dirs[legacy] = map[string]string{}
	if err := f.CreateDirQuota(ctx, legacy, 5<<20); err != nil {
		t.Fatal(err)
	}
	eid, err := f.CreateExport(ctx, Export{Zone: "zoneA", Path: legacy, ReadWriteClients: []string{"10.0.0.7"}})
	if err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	v, err := c.Adopt(ctx, &backend.AdoptRequest{Object: legacy, Tenant: "shop", Name: "legacy-site7",
		Parameters: map[string]string{ParamAccessZone: "zoneA"}, Secrets: goodSecrets})
	if err != nil {
		t.Fatal(err)
	}
	if v.ID.Location != "za" || v.ID.Object != legacy || v.Context[CtxZone] != "zoneA" {
		t.Fatalf("adopted %+v", v)
	}
	if len(f.exports) != 1 || f.exports[eid] == nil || !slices.Contains(f.exports[eid].ReadOnlyClients, NoAccessClient) {
		t.Fatalf("exports after adoption: %+v (want zoneA's export kept, with the placeholder)", f.exports)
	}
	if _, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n1", Address: "10.0.0.1"}, backend.PublishAccess{}, v.Context, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.exports[eid].Clients, "10.0.0.1") {
		t.Fatalf("publish did not grant on zoneA's export: %+v", f.exports[eid])
	}
	for _, call := range exportCalls(f.takeCalls()) {
		if !strings.HasSuffix(call, " in zoneA") {
			t.Errorf("export call %q does not name zone zoneA", call)
		}
	}
	// A zone's own tree is refused like the default one.
	if _, err := c.Adopt(ctx, &backend.AdoptRequest{Object: "/ifs/zoneA/sh", Tenant: "shop", Name: "x", SizeBytes: 1}); backend.CodeOf(err) != backend.InvalidArgument {
		t.Fatalf("adopting zoneA's own tree: %v", err)
	}
}
