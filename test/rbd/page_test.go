package rbdtest

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
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
		// As uniqueTenant: the namespace goes once the trash purge emptied it, else stays.
		t.Cleanup(func() { exec.Command("rbd", "-c", c.conf, "namespace", "rm", "rbd/"+tn).Run() })
		for i := 0; i < 3; i++ {
			v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: fmt.Sprintf("%s-%d", tn, i), Tenant: tn, RequiredBytes: 1 << 20,
				Parameters: map[string]string{backend.ParamBackend: "rbd-test"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ctl.DeleteVolume(ctxT(t, time.Minute), v.ID, nil) })
			want = append(want, v.ID.String())
		}
	}
	// A token just before the first tenant's volumes (pool IDs are positive).
	after := volid.Volume{Backend: "rbd-test", Tenant: tenants[0], Location: "0", Hash: "0000000000000000"}.String()
	var got []string
	for pages := 0; pages < 10; pages++ {
		vols, err := ctl.ListVolumesAfter(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(vols) > 2 {
			t.Fatalf("a page of 2 has %d volumes", len(vols))
		}
		ours := 0
		for _, v := range vols {
			if v.ID.Tenant == tenants[0] || v.ID.Tenant == tenants[1] {
				got = append(got, v.ID.String())
				ours++
			}
		}
		if len(vols) == 0 || ours < len(vols) {
			break
		}
		after = vols[len(vols)-1].ID.String()
	}
	if fmt.Sprint(got) != fmt.Sprint(sorted(want)) {
		t.Fatalf("pages listed\n%v\nwant\n%v", got, sorted(want))
	}
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
