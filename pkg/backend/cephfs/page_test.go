package cephfs

import (
	"context"
	"fmt"
	"testing"
)

// ListVolumesAfter pages the volumes in ID order across tenants and asks the mgr for the
// details of a page's subvolumes only (ListVolumes asks for every subvolume's).
func TestListVolumesAfterPages(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		r := volReq(fmt.Sprintf("v%d", i), 1)
		r.Tenant = []string{"team-a", "team-b"}[i%2]
		if _, err := c.CreateVolume(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	f.mgrCommands()
	var got []string
	after := ""
	for pages := 0; pages < 10; pages++ {
		vols, err := c.ListVolumesAfter(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		infos := 0
		for _, cmd := range f.mgrCommands() {
			if cmd == "fs subvolume info" {
				infos++
			}
		}
		if infos > len(vols) {
			t.Errorf("a page of %d volumes asked for %d subvolume infos", len(vols), infos)
		}
		if len(vols) == 0 {
			break
		}
		for _, v := range vols {
			got = append(got, v.ID.String())
		}
		after = got[len(got)-1]
	}
	all, err := c.ListVolumes(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) || len(got) != 10 {
		t.Fatalf("pages listed %d volumes, ListVolumes %d, want 10", len(got), len(all))
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("pages not in ID order or repeated: %v", got)
		}
	}
}
