package isilon

import (
	"context"
	"slices"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

const legacyDir = "/ifs/data/legacy/site42"

func adoptReq(size int64) *backend.AdoptRequest {
	return &backend.AdoptRequest{Object: legacyDir, Tenant: "shop", Name: "legacy-site42", SizeBytes: size, Secrets: goodSecrets}
}

func TestAdoptKeepsExportAndQuotaAndRecordsTheVolume(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	f.dirs[legacyDir] = map[string]string{}
	f.files[legacyDir+"/index.html"] = "hello"
	if err := f.CreateDirQuota(ctx, legacyDir, 5<<20); err != nil {
		t.Fatal(err)
	}
	eid, _ := f.CreateExport(ctx, Export{Zone: "System", Path: legacyDir, ReadWriteClients: []string{"10.0.0.7"}})

	v, err := c.Adopt(ctx, adoptReq(0))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := volid.Adopted("isi", "shop", "", legacyDir)
	if v.ID != want || v.CapacityBytes != 5<<20 || v.Context[CtxExportPath] != legacyDir {
		t.Fatalf("adopted %+v, want ID %s of 5 MiB at %s", v, want, legacyDir)
	}
	e, _ := f.ExportOf(ctx, "System", legacyDir)
	if e.ID != eid || !slices.Contains(e.ReadOnlyClients, NoAccessClient) || !slices.Contains(e.ReadWriteClients, "10.0.0.7") {
		t.Fatalf("export after adoption: %+v (want the same export, its client kept, the never-open placeholder added)", e)
	}
	if f.files[legacyDir+"/index.html"] != "hello" {
		t.Fatal("the data moved or went")
	}
	// Every call by ID reaches the same directory.
	got, err := c.GetVolume(ctx, v.ID, goodSecrets)
	if err != nil || got.CapacityBytes != 5<<20 || got.RequestName != "legacy-site42" {
		t.Fatalf("GetVolume: %+v %v", got, err)
	}
	if size, _, err := c.ExpandVolume(ctx, v.ID, 8<<20, 0, goodSecrets); err != nil || size != 8<<20 || f.quotas[legacyDir].Hard != 8<<20 {
		t.Fatalf("ExpandVolume: %d %v, quota %+v", size, err, f.quotas[legacyDir])
	}
	if _, err := c.CreateSnapshot(ctx, v.ID, "snap-1", nil, goodSecrets); err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	// Adopting again is a retry; by another tenant a collision.
	if again, err := c.Adopt(ctx, adoptReq(0)); err != nil || again.ID != v.ID || again.CapacityBytes != 8<<20 {
		t.Fatalf("second adoption: %+v %v", again, err)
	}
	other := adoptReq(0)
	other.Tenant = "rival"
	if _, err := c.Adopt(ctx, other); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("adoption by another tenant: %v, want AlreadyExists", err)
	}
	if err := c.DeleteVolume(ctx, v.ID, goodSecrets); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.dirs[legacyDir]; ok {
		t.Fatal("DeleteVolume left the adopted directory")
	}
}

func TestAdoptRefuses(t *testing.T) {
	testCases := []struct {
		name    string
		prepare func(f *fakeArray)
		req     *backend.AdoptRequest
		want    backend.Code
	}{
		{name: "no such directory", req: adoptReq(1 << 20), want: backend.NotFound},
		{name: "no quota and no size", prepare: func(f *fakeArray) { f.dirs[legacyDir] = map[string]string{} }, req: adoptReq(0), want: backend.InvalidArgument},
		{name: "outside /ifs", req: &backend.AdoptRequest{Object: "/etc", Tenant: "shop", Name: "x", SizeBytes: 1, Secrets: goodSecrets}, want: backend.InvalidArgument},
		{name: "shiphold's own volume", prepare: func(f *fakeArray) { f.dirs["/ifs/data/sh/shop/csi-vol-0123456789abcdef"] = map[string]string{} },
			req: &backend.AdoptRequest{Object: "/ifs/data/sh/shop/csi-vol-0123456789abcdef", Tenant: "shop", Name: "x", SizeBytes: 1, Secrets: goodSecrets}, want: backend.AlreadyExists},
		{name: "holds shiphold's volumes", prepare: func(f *fakeArray) { f.dirs["/ifs/data/sh/shop"] = map[string]string{} },
			req: &backend.AdoptRequest{Object: "/ifs/data/sh", Tenant: "shop", Name: "x", SizeBytes: 1, Secrets: goodSecrets}, want: backend.InvalidArgument},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			c, f, _ := testController(t)
			if tc.prepare != nil {
				tc.prepare(f)
			}
			if _, err := c.Adopt(context.Background(), tc.req); backend.CodeOf(err) != tc.want {
				t.Fatalf("Adopt: %v, want %v", err, tc.want)
			}
		})
	}
}

// A bare directory (no export, no quota) gets both, closed to everyone until a publish.
func TestAdoptBareDirectory(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	f.dirs[legacyDir] = map[string]string{}
	v, err := c.Adopt(ctx, adoptReq(3<<20))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := f.ExportOf(ctx, "System", legacyDir)
	if e == nil || len(e.ReadOnlyClients) != 1 || e.ReadOnlyClients[0] != NoAccessClient || len(e.ReadWriteClients)+len(e.Clients)+len(e.RootClients) != 0 {
		t.Fatalf("export of an adopted bare directory: %+v, want only the never-open placeholder", e)
	}
	if q := f.quotas[legacyDir]; q == nil || q.Hard != 3<<20 || v.CapacityBytes != 3<<20 {
		t.Fatalf("quota %+v, capacity %d, want a 3 MiB hard quota", q, v.CapacityBytes)
	}
}

// An adopted directory is listed with the volumes of its tenant, under its adopted ID and
// its quota's size; a directory with a quota but no adoption record is not (issue 12).
func TestListVolumesListsAdoptedDirectories(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	f.dirs[legacyDir] = map[string]string{}
	f.dirs["/ifs/data/legacy/never-adopted"] = map[string]string{}
	if err := f.CreateDirQuota(ctx, "/ifs/data/legacy/never-adopted", 1<<20); err != nil {
		t.Fatal(err)
	}
	v, err := c.Adopt(ctx, adoptReq(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-1", Tenant: "shop", RequiredBytes: 1 << 20, Secrets: goodSecrets}); err != nil {
		t.Fatal(err)
	}
	listed := func(tenant string) map[string]int64 {
		t.Helper()
		vols, err := c.ListVolumes(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, v := range vols {
			out[v.ID.String()] = v.CapacityBytes
		}
		return out
	}
	for _, tenant := range []string{"", "shop"} {
		if got := listed(tenant); len(got) != 2 || got[v.ID.String()] != 4<<20 {
			t.Fatalf("ListVolumes(%q) = %v, want the created volume and %s of 4 MiB", tenant, got, v.ID)
		}
	}
	if got := listed("rival"); len(got) != 0 {
		t.Fatalf("ListVolumes(rival) = %v, want none", got)
	}
	if _, _, err := c.ExpandVolume(ctx, v.ID, 6<<20, 0, goodSecrets); err != nil {
		t.Fatal(err)
	}
	if got := listed("shop"); got[v.ID.String()] != 6<<20 {
		t.Fatalf("after expansion ListVolumes = %v, want %s of 6 MiB", got, v.ID)
	}
	if err := c.DeleteVolume(ctx, v.ID, goodSecrets); err != nil {
		t.Fatal(err)
	}
	if got := listed(""); len(got) != 1 {
		t.Fatalf("after its delete ListVolumes = %v, want the created volume only", got)
	}
}

// Another backend on the same array does not list a directory this one adopted: it would
// take it for a volume of its own that no PV references, and gc would offer to delete it.
func TestListVolumesLeavesAnotherBackendsAdoptions(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	f.dirs[legacyDir] = map[string]string{}
	if _, err := c.Adopt(ctx, adoptReq(4<<20)); err != nil {
		t.Fatal(err)
	}
	other, err := NewController(&config.Backend{Name: "isi-b", Kind: "isilon", Section: c.cfg})
	if err != nil {
		t.Fatal(err)
	}
	other.conn.open = func(context.Context, credentials) (array, error) { return f, nil }
	if vols, err := other.ListVolumes(ctx, ""); err != nil || len(vols) != 0 {
		t.Fatalf("backend isi-b lists %v (%v), want none of isi's adoptions", vols, err)
	}
}
