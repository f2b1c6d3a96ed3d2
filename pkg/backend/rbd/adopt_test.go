package rbd

import (
	"context"
	"slices"
	"sort"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

func TestAdoptedImagePlace(t *testing.T) {
	own := volid.Volume{Backend: "rbd", Tenant: "shop", Location: "2", Hash: volid.Hash("pvc-1")}
	def, _ := volid.Adopted("rbd", "shop", "2", "/csi-vol-0a1b")
	inNS, _ := volid.Adopted("rbd", "shop", "2", "legacy/site")
	for _, tc := range []struct {
		id        volid.Volume
		ns, image string
	}{{own, "shop", imageName(own.Hash)}, {def, "", "csi-vol-0a1b"}, {inNS, "legacy", "site"}} {
		if ns, img := volumeNamespace(tc.id), volumeImage(tc.id); ns != tc.ns || img != tc.image {
			t.Errorf("%s: namespace %q image %q, want %q %q", tc.id, ns, img, tc.ns, tc.image)
		}
	}
}

// The mgr refuses "pool//image": an image of the default namespace is "pool/image".
func TestTaskSpecOfTheDefaultNamespace(t *testing.T) {
	if got := rbdSpec("rbd", "", "10667d2680cf"); got != "rbd/10667d2680cf" {
		t.Fatalf("rbdSpec in the default namespace = %q", got)
	}
	if got := rbdSpec("rbd", "shop", "img"); got != "rbd/shop/img" {
		t.Fatalf("rbdSpec in a namespace = %q", got)
	}
}

// An adopted image is listed with its tenant's volumes, under its adopted ID and its size,
// by ListVolumes and by the paged listing; an image no one adopted is not (issue 12).
func TestListVolumesListsAdoptedImages(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	io, _ := f.OpenPool("rbd")
	for _, name := range []string{"legacy", "never-adopted"} {
		if err := io.CreateImage(name, gib, 1); err != nil {
			t.Fatal(err)
		}
	}
	adopted, err := c.Adopt(ctx, &backend.AdoptRequest{Object: "rbd//legacy", Tenant: "t1", Name: "pv-legacy", SizeBytes: 2 * gib,
		Parameters: map[string]string{ParamMounter: MounterFuse}})
	if err != nil {
		t.Fatal(err)
	}
	own := mustCreate(t, c, volReq("pvc-1", gib))
	want := []string{adopted.ID.String(), own.ID.String()}
	ids := func(vols []*backend.Volume, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range vols {
			if v.ID == adopted.ID && v.CapacityBytes != 2*gib {
				t.Errorf("%s listed with %d bytes, want %d", v.ID, v.CapacityBytes, 2*gib)
			}
			out = append(out, v.ID.String())
		}
		sort.Strings(out)
		return out
	}
	for _, tenant := range []string{"", "t1"} {
		if got := ids(c.ListVolumes(ctx, tenant)); !slices.Equal(got, want) {
			t.Errorf("ListVolumes(%q) = %v, want %v", tenant, got, want)
		}
	}
	if got := ids(c.ListVolumes(ctx, "t2")); len(got) != 0 {
		t.Errorf("ListVolumes(t2) = %v, want none", got)
	}
	if got := ids(c.ListAllocations(ctx)); !slices.Equal(got, want) {
		t.Errorf("ListAllocations (the tenant quotas' reading) = %v, want %v", got, want)
	}
	if got := ids(c.ListVolumesAfter(ctx, "", 0)); !slices.Equal(got, want) {
		t.Errorf("ListVolumesAfter(all) = %v, want %v", got, want)
	}
	var paged []string
	for after := ""; ; {
		page := ids(c.ListVolumesAfter(ctx, after, 1))
		if len(page) == 0 {
			break
		}
		if len(paged) > 4 {
			t.Fatalf("pages of one go on: %v", paged)
		}
		paged = append(paged, page...)
		after = page[0]
	}
	if !slices.Equal(paged, want) {
		t.Errorf("pages of one: %v, want %v", paged, want)
	}
	if err := c.DeleteVolume(ctx, adopted.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := ids(c.ListVolumes(ctx, "")); !slices.Equal(got, want[1:]) {
		t.Errorf("after the adopted image's delete ListVolumes = %v, want %v", got, want[1:])
	}
}

// Deleting an adopted image outside its tenant's namespace (ceph-csi's, in the pool's
// default namespace) moves it to that namespace's trash and queues its purge there: the
// purge task named the tenant's namespace, the mgr found no such trash entry, and the
// image stayed in the trash for the periodic sweep.
func TestDeleteAdoptedImagePurgesItsOwnNamespacesTrash(t *testing.T) {
	c, f := newFakeController(t)
	ctx := context.Background()
	io, _ := f.OpenPool("rbd")
	if err := io.CreateImage("legacy", gib, 1); err != nil {
		t.Fatal(err)
	}
	adopted, err := c.Adopt(ctx, &backend.AdoptRequest{Object: "rbd//legacy", Tenant: "t1", Name: "pv-legacy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, adopted.ID, nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if img := f.pools["rbd"].images["/legacy"]; img != nil {
		t.Fatal("the adopted image is still in place after its delete")
	}
	for key := range f.pools["rbd"].trash {
		t.Errorf("trash entry %s left after the delete: its purge was not queued where it is", key)
	}
	for _, task := range f.tasks {
		if task.Refs.Namespace != "" {
			t.Errorf("task %q names namespace %q, want the image's own (the default one)", task.spec, task.Refs.Namespace)
		}
	}
}
