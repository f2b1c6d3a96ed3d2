package rbdtest

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListVolumesAfter pages a real pool's volumes in ID order across tenants (RADOS
// namespaces), from a token's place on, each volume once.
func TestRBDListVolumesAfterPages(t *testing.T) {
	c := needCeph(t)
	ctl, _ := c.controller(t)
	base := c.uniqueTenant(t, "page")
	tenants := []string{base + "-a", base + "-b"}
	ctx := ctxT(t, 5*time.Minute)
	var want []string
	for _, tn := range tenants {
		want = append(want, c.makeVolumes(t, ctx, ctl, tn, 3)...)
	}
	// A token just before the first tenant's volumes (pool IDs are positive).
	after := volid.Volume{Backend: "rbd-test", Tenant: tenants[0], Location: "0", Hash: "0000000000000000"}.String()
	got := pageOurs(t, ctx, ctl, after, 2, 10, func(tn string) bool { return tn == tenants[0] || tn == tenants[1] })
	if fmt.Sprint(got) != fmt.Sprint(sorted(want)) {
		t.Fatalf("pages listed\n%v\nwant\n%v", got, sorted(want))
	}
}

// makeVolumes creates n volumes of 1 MiB for tenant, deleted at the end of the test with
// the tenant's namespace, and returns their IDs.
func (c *cluster) makeVolumes(t *testing.T, ctx context.Context, ctl *rbd.Controller, tenant string, n int) []string {
	t.Helper()
	// As uniqueTenant: the namespace goes once the trash purge emptied it, else stays.
	t.Cleanup(func() { exec.Command("rbd", "-c", c.conf, "namespace", "rm", "rbd/"+tenant).Run() })
	var ids []string
	for i := range n {
		v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: fmt.Sprintf("%s-%d", tenant, i), Tenant: tenant, RequiredBytes: 1 << 20,
			Parameters: map[string]string{backend.ParamBackend: "rbd-test"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ctl.DeleteVolume(ctxT(t, time.Minute), v.ID, nil) })
		ids = append(ids, v.ID.String())
	}
	return ids
}

// pageOurs pages ListVolumesAfter from after, at most pages pages of max, and returns the
// IDs of the volumes of the tenants ours names, until a page holds another's or none.
func pageOurs(t *testing.T, ctx context.Context, ctl *rbd.Controller, after string, max, pages int, ours func(tenant string) bool) []string {
	t.Helper()
	var got []string
	for range pages {
		vols, err := ctl.ListVolumesAfter(ctx, after, max)
		if err != nil {
			t.Fatal(err)
		}
		if len(vols) > max {
			t.Fatalf("a page of %d has %d volumes", max, len(vols))
		}
		n := 0
		for _, v := range vols {
			if ours(v.ID.Tenant) {
				got = append(got, v.ID.String())
				n++
			}
		}
		if len(vols) == 0 || n < len(vols) {
			break
		}
		after = vols[len(vols)-1].ID.String()
	}
	return got
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// A tenant with more volumes than one read of its image directory brings (64 names and
// up), beside images that are not volumes: the pages read the directory's name_ keys a
// part at a time and still list each volume once, in ID order.
func TestRBDListVolumesAfterPagesALargeTenant(t *testing.T) {
	c := needCeph(t)
	ctl, _ := c.controller(t)
	tn := c.uniqueTenant(t, "bigpage")
	ctx := ctxT(t, 5*time.Minute)
	want := c.makeVolumes(t, ctx, ctl, tn, 150)
	for _, name := range []string{"aaa-user-image", "csi-vol-short", "zzz-user-image"} {
		if out, err := exec.Command("rbd", "-c", c.conf, "create", "--size", "1M", "rbd/"+tn+"/"+name).CombinedOutput(); err != nil {
			t.Fatalf("rbd create %s: %v %s", name, err, out)
		}
		t.Cleanup(func() { exec.Command("rbd", "-c", c.conf, "rm", "rbd/"+tn+"/"+name).Run() })
	}
	after := volid.Volume{Backend: "rbd-test", Tenant: tn, Location: "0", Hash: "0000000000000000"}.String()
	got := pageOurs(t, ctx, ctl, after, 40, 20, func(t string) bool { return t == tn })
	if fmt.Sprint(got) != fmt.Sprint(sorted(want)) {
		t.Fatalf("pages listed %d volumes, want the %d made, in ID order", len(got), len(want))
	}
}
