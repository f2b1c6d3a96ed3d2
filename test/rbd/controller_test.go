package rbdtest

import (
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

func TestRBDRealCreateIdempotentDelete(t *testing.T) {
	c := needCeph(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "crt")
	ctx := ctxT(t, time.Minute)
	req := &backend.VolumeRequest{Name: "pvc-" + tenant, Tenant: tenant, RequiredBytes: 10<<20 + 1,
		Parameters: map[string]string{backend.ParamBackend: "rbd-test"}}
	v, err := ctl.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if v.CapacityBytes != 11<<20 {
		t.Fatalf("capacity %d, want 11 MiB", v.CapacityBytes)
	}
	// The image really sits in the tenant's namespace.
	ls := c.rbdCLI(t, "ls", "rbd/"+tenant)
	if !strings.Contains(ls, v.Context["imageName"]) {
		t.Fatalf("image %s not in namespace %s: %q", v.Context["imageName"], tenant, ls)
	}
	if ls := c.rbdCLI(t, "ls", "rbd"); strings.Contains(ls, v.Context["imageName"]) {
		t.Fatalf("image leaked into the default namespace")
	}
	v2, err := ctl.CreateVolume(ctx, req)
	if err != nil || v2.ID != v.ID || v2.CapacityBytes != v.CapacityBytes {
		t.Fatalf("retry: %+v, %v; want %+v", v2, err, v)
	}
	diff := *req
	diff.RequiredBytes = 20 << 20
	if _, err := ctl.CreateVolume(ctx, &diff); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("different size: %v, want AlreadyExists", err)
	}
	diffp := *req
	diffp.Parameters = map[string]string{backend.ParamBackend: "rbd-test", "imageFeatures": "layering,exclusive-lock"}
	if _, err := ctl.CreateVolume(ctx, &diffp); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("different params: %v, want AlreadyExists", err)
	}
	got, err := ctl.GetVolume(ctx, v.ID, nil)
	if err != nil || got.RequestName != req.Name {
		t.Fatalf("GetVolume: %+v %v", got, err)
	}
	vols, err := ctl.ListVolumes(ctx, tenant)
	if err != nil || len(vols) != 1 || vols[0].ID != v.ID {
		t.Fatalf("ListVolumes: %+v %v", vols, err)
	}
	size, node, err := ctl.ExpandVolume(ctx, v.ID, 30<<20, 0, nil)
	if err != nil || size != 30<<20 || !node {
		t.Fatalf("expand: %d %v %v", size, node, err)
	}
	if size, _, err := ctl.ExpandVolume(ctx, v.ID, 1<<20, 0, nil); err != nil || size != 30<<20 {
		t.Fatalf("shrink is a no-op: %d %v", size, err)
	}
	if err := ctl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := ctl.GetVolume(ctx, v.ID, nil); !backend.IsNotFound(err) {
		t.Fatalf("GetVolume after delete: %v", err)
	}
	if capb, err := ctl.Capacity(ctx, nil); err != nil || capb <= 0 {
		t.Fatalf("capacity %d %v", capb, err)
	}
	if _, err := ctl.Capacity(ctx, map[string]string{"pool": "nope"}); backend.CodeOf(err) != backend.InvalidArgument {
		t.Fatalf("capacity of missing pool: %v", err)
	}
	if err := ctl.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	bad := *req
	bad.Name = "other"
	bad.Parameters = map[string]string{"pool": "no-such-pool"}
	if _, err := ctl.CreateVolume(ctx, &bad); backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "no-such-pool") {
		t.Fatalf("missing pool: %v", err)
	}
	if _, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "x", Tenant: tenant, RequiredBytes: 1 << 20, Secrets: map[string]string{"userID": "admin"}}); backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "userKey") {
		t.Fatalf("missing secret key: %v", err)
	}
}
