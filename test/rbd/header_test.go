package rbdtest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// GetVolume, ListVolumes and the readings of tenant usage read an image's size and record
// from its header without opening it (cls_rbd's get_size and the record's metadata_ key,
// decoded here, not by librbd): what they report must be what `rbd info` says, for plain
// volumes, an expanded one, one with a snapshot, and an image without a record (counted by
// the quota, listed by gc, not a volume).
func TestRBDRealHeaderReadsMatchRBDInfo(t *testing.T) {
	l := newLocal(t)
	ctl := l.controller(t)
	ctx := minute(t)
	tenant := l.tenant(t, "hdr")
	var vols []*backend.Volume
	for i := range 3 {
		v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: fmt.Sprintf("pvc-hdr-%s-%d", tenant, i), Tenant: tenant, RequiredBytes: int64(i+1) << 20})
		if err != nil {
			t.Fatal(err)
		}
		vols = append(vols, v)
		t.Cleanup(func() { ctl.DeleteVolume(minute(t), v.ID, nil) })
	}
	if _, _, err := ctl.ExpandVolume(ctx, vols[1].ID, 24<<20, 0, nil); err != nil {
		t.Fatal(err)
	}
	snap, err := ctl.CreateSnapshot(ctx, vols[2].ID, "snap-hdr-"+tenant, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.DeleteSnapshot(minute(t), snap.ID, nil) })
	stray := "csi-vol-" + volid.Hash("stray-"+tenant)
	l.cli(t, "rbd", "create", "--size", "5M", "rbd/"+tenant+"/"+stray)
	t.Cleanup(func() { l.cli(t, "rbd", "rm", "--no-progress", "rbd/"+tenant+"/"+stray) })

	infoSize := func(image string) int64 {
		var info struct {
			Size int64 `json:"size"`
		}
		if err := json.Unmarshal([]byte(l.cli(t, "rbd", "info", "--format", "json", "rbd/"+tenant+"/"+image)), &info); err != nil {
			t.Fatal(err)
		}
		return info.Size
	}
	want := map[string]int64{}
	for _, v := range vols {
		want[v.ID.String()] = infoSize(v.Context["imageName"])
	}
	if want[vols[1].ID.String()] != 24<<20 {
		t.Fatalf("rbd info says the expanded image has %d bytes", want[vols[1].ID.String()])
	}

	for _, v := range vols {
		got, err := ctl.GetVolume(ctx, v.ID, nil)
		if err != nil || got.CapacityBytes != want[v.ID.String()] || got.RequestName != v.RequestName {
			t.Errorf("GetVolume(%s): %+v, %v; rbd info says %d bytes, created as %q", v.ID, got, err, want[v.ID.String()], v.RequestName)
		}
	}
	listed, err := ctl.ListVolumes(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	allocs, err := ctl.ListTenantAllocations(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	recordless, err := ctl.ListRecordless(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sizes := func(vols []*backend.Volume) map[string]int64 {
		out := map[string]int64{}
		for _, v := range vols {
			if v.ID.Tenant == tenant {
				out[v.ID.String()] = v.CapacityBytes
			}
		}
		return out
	}
	if got := sizes(listed); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ListVolumes: %v\nrbd info: %v", got, want)
	}
	strayID := vols[0].ID
	strayID.Hash = volid.Hash("stray-" + tenant)
	wantAllocs := map[string]int64{strayID.String(): infoSize(stray)}
	for k, v := range want {
		wantAllocs[k] = v
	}
	if got := sizes(allocs); fmt.Sprint(got) != fmt.Sprint(wantAllocs) {
		t.Errorf("ListTenantAllocations: %v\nrbd info: %v", got, wantAllocs)
	}
	if got := sizes(recordless); fmt.Sprint(got) != fmt.Sprint(map[string]int64{strayID.String(): 5 << 20}) {
		t.Errorf("ListRecordless: %v; want the stray image alone, at 5 MiB", got)
	}
}
