package driver

import (
	"context"
	"fmt"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// A page of ListVolumes reads about a page of volumes from the storage, from the backend the
// token points into, not every volume of every backend again (issue 15: 10,000 volumes).
func TestListVolumesPageReadsAPage(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	for i := 0; i < 12; i++ {
		for _, b := range []string{"ceph-rbd", "isilon"} {
			if _, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("%s-%d", b, i), VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": b}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.rbd.listed.Store(0)
	f.nfs.listed.Store(0)
	const max = 3
	seen := map[string]bool{}
	token := ""
	pages := 0
	for ; pages < 20; pages++ {
		before := f.rbd.listed.Load() + f.nfs.listed.Load()
		resp, err := f.d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: max, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if read := f.rbd.listed.Load() + f.nfs.listed.Load() - before; read > max+1 {
			t.Errorf("page %d (%d entries) read %d volumes from the backends, want at most %d", pages, len(resp.Entries), read, max+1)
		}
		if pages == 0 && f.nfs.listed.Load() != 0 {
			t.Errorf("the first page, all on ceph-rbd, read %d volumes of isilon", f.nfs.listed.Load())
		}
		for _, e := range resp.Entries {
			if seen[e.Volume.VolumeId] {
				t.Errorf("%s listed twice", e.Volume.VolumeId)
			}
			seen[e.Volume.VolumeId] = true
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	if len(seen) != 24 || pages != 7 {
		t.Fatalf("listed %d volumes in %d pages, want 24 in 8 pages of %d", len(seen), pages+1, max)
	}
}

// The fallback for a backend without VolumePager lists from the token too.
func TestListVolumesWithoutPager(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("v-%d", i), VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}}); err != nil {
			t.Fatal(err)
		}
	}
	f.d.ControllerServer.opts.Controllers["ceph-rbd"] = unpaged{f.rbd}
	var ids []string
	token := ""
	for i := 0; i < 10; i++ {
		resp, err := f.d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			ids = append(ids, e.Volume.VolumeId)
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	if len(ids) != 5 {
		t.Fatalf("listed %v, want the 5 volumes", ids)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("not in ID order or repeated: %v", ids)
		}
	}
}

// GetCapacity answers repeated calls from a recent reading: the CO polls it per class and
// topology segment, and each reading is a `ceph df` or a PAPI call.
func TestGetCapacityCached(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	req := &csi.GetCapacityRequest{Parameters: map[string]string{"backend": "ceph-rbd"}}
	for i := 0; i < 3; i++ {
		rsp, err := f.d.GetCapacity(ctx, req)
		if err != nil || rsp.AvailableCapacity != 100<<30 {
			t.Fatalf("GetCapacity: %v %v", rsp, err)
		}
	}
	if n := f.rbd.capacities.Load(); n != 1 {
		t.Fatalf("3 GetCapacity calls read the storage %d times, want once", n)
	}
	// Other parameters are another reading.
	if _, err := f.d.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"backend": "ceph-rbd", "pool": "other"}}); err != nil {
		t.Fatal(err)
	}
	if n := f.rbd.capacities.Load(); n != 2 {
		t.Fatalf("a different pool read the storage %d times in all, want 2", n)
	}
}

// A failed reading is not kept: the next call asks the storage again.
func TestGetCapacityErrorNotCached(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	req := &csi.GetCapacityRequest{Parameters: map[string]string{"backend": "ceph-rbd"}}
	f.rbd.failWith = fmt.Errorf("monitors down")
	if _, err := f.d.GetCapacity(ctx, req); err == nil {
		t.Fatal("GetCapacity with the storage failing: no error")
	}
	f.rbd.failWith = nil
	if rsp, err := f.d.GetCapacity(ctx, req); err != nil || rsp.AvailableCapacity != 100<<30 {
		t.Fatalf("GetCapacity after the storage came back: %v %v", rsp, err)
	}
}

// unpaged is a controller with only the Controller methods (no VolumePager).
type unpaged struct{ backend.Controller }

// Backends whose names share a prefix page in ID order: "v1:ceph-2:..." sorts before
// "v1:ceph:...", so a token in ceph-2 must not skip ceph, nor one in ceph list ceph-2 again.
func TestListVolumesBackendsInIDOrder(t *testing.T) {
	cfg := &config.Config{Backends: []config.Backend{{Name: "ceph", Kind: "rbd"}, {Name: "ceph-2", Kind: "rbd"}}}
	fakes := map[string]backend.Controller{"ceph": newFake("ceph", "rbd"), "ceph-2": newFake("ceph-2", "rbd")}
	d, err := Compose(ModeController, Options{Kinds: registry.Kinds(), Name: "shiphold.csi.io", Version: "test", Config: cfg, Controllers: fakes})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		for _, b := range []string{"ceph", "ceph-2"} {
			if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("v%d", i), VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": b}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ids []string
	token := ""
	for i := 0; i < 10; i++ {
		resp, err := d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			ids = append(ids, e.Volume.VolumeId)
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	if len(ids) != 6 {
		t.Fatalf("listed %d volumes, want 6: %v", len(ids), ids)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("not in ID order or repeated: %v", ids)
		}
	}
}

// Adopted volumes (IDs "a1:...") are paged with their backend's volumes: a token that is an
// adopted ID goes on from there, not from the backend's first volume again (issue 12).
func TestListVolumesPagesAdoptedVolumes(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	ctx := context.Background()
	want := map[string]bool{}
	for i := 0; i < 3; i++ {
		for _, b := range []string{"ceph-rbd", "isilon"} {
			v, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("%s-%d", b, i), VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": b}})
			if err != nil {
				t.Fatal(err)
			}
			want[v.Volume.VolumeId] = true
			id, err := volid.Adopted(b, "shop", "", fmt.Sprintf("/ifs/legacy/site-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			fc := f.rbd
			if b == "isilon" {
				fc = f.nfs
			}
			fc.mu.Lock()
			fc.vols[id.String()] = &backend.Volume{ID: id, CapacityBytes: 1 << 20}
			fc.mu.Unlock()
			want[id.String()] = true
		}
	}
	seen := map[string]bool{}
	token := ""
	for pages := 0; pages < 20; pages++ {
		resp, err := f.d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			if seen[e.Volume.VolumeId] {
				t.Errorf("%s listed twice", e.Volume.VolumeId)
			}
			seen[e.Volume.VolumeId] = true
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("%s never listed", id)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("listed %d volumes, want %d", len(seen), len(want))
	}
}
