package gc

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// store is a backend holding volumes, record-less allocations, leftovers and exports; it
// records every removal. The embedded nil interface panics on any other call.
type store struct {
	backend.Controller
	name      string
	vols      []*backend.Volume
	unrecord  []*backend.Volume
	left      []backend.Leftover
	exports   []backend.ExportClients
	deleteErr error

	mu         sync.Mutex
	deleted    []string
	collects   int
	snapSweeps int
	dropped    []string
}

func (s *store) Name() string { return s.name }
func (s *store) ListVolumes(context.Context, string) ([]*backend.Volume, error) {
	return s.vols, nil
}
func (s *store) ListRecordless(context.Context) ([]*backend.Volume, error) {
	return s.unrecord, nil
}
func (s *store) DeleteVolume(_ context.Context, id volid.Volume, _ map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleteErr != nil {
		return s.deleteErr
	}
	s.deleted = append(s.deleted, id.String())
	return nil
}
func (s *store) Leftovers(context.Context) ([]backend.Leftover, error) { return s.left, nil }
func (s *store) Collect(context.Context) ([]backend.Leftover, error) {
	s.collects++
	return s.left, nil
}
func (s *store) CollectSnapshots(_ context.Context, tenant string) ([]backend.Leftover, error) {
	s.snapSweeps++
	var still []backend.Leftover
	for _, l := range s.left {
		if l.Kind == KindTemporarySnapshot && l.Tenant == tenant && strings.Contains(l.State, "in progress") {
			still = append(still, l)
		}
	}
	return still, nil
}
func (s *store) ExportClients(context.Context) ([]backend.ExportClients, error) {
	return s.exports, nil
}
func (s *store) RemoveExportClient(_ context.Context, id volid.Volume, addr string) error {
	s.dropped = append(s.dropped, addr+"@"+id.String())
	return nil
}

func v(b, tenant, name string) *backend.Volume {
	return &backend.Volume{ID: volid.Volume{Backend: b, Tenant: tenant, Location: "1", Hash: volid.Hash(name)}, RequestName: name}
}

// world: db is named by a Released PV's handle, web by a VolumeAttachment of its PV (whose
// PV object is gone), old by nothing; node-1 has 10.0.0.1.
func world(t *testing.T) (*store, *Cluster) {
	db, web, old := v("ceph-rbd", "shop", "pvc-db"), v("ceph-rbd", "shop", "pvc-web"), v("ceph-rbd", "blog", "pvc-old")
	web.RequestName = "" // an Isilon or CephFS volume: known by the hash of its name only
	half := v("ceph-rbd", "shop", "pvc-half")
	half.RequestName = ""
	s := &store{name: "ceph-rbd", vols: []*backend.Volume{db, web, old}, unrecord: []*backend.Volume{half},
		left: []backend.Leftover{{Backend: "ceph-rbd", Tenant: "shop", Kind: "trash entry", Name: "rbd/shop/abc", State: "purge not queued"},
			{Backend: "ceph-rbd", Tenant: "shop", Kind: KindTemporarySnapshot, Name: "rbd/shop/csi-vol-1@csi-tmp-2", State: "clone csi-vol-2 gone"},
			{Backend: "ceph-rbd", Tenant: "shop", Kind: KindTemporarySnapshot, Name: "rbd/shop/csi-vol-1@csi-tmp-3", State: "clone csi-vol-3 in progress"}},
		exports: []backend.ExportClients{{Volume: db.ID, ExportID: 7, Clients: []string{"10.0.0.1", "10.0.0.2", "10.9.9.9"}, Stale: []string{"10.9.9.9"}}}}
	pvName := "pvc-web"
	client := fake.NewSimpleClientset(
		&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-db"},
			Spec:   corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "shiphold.csi.io", VolumeHandle: db.ID.String()}}},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeReleased}},
		&storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "csi-123"},
			Spec: storagev1.VolumeAttachmentSpec{Attacher: "shiphold.csi.io", NodeName: "node-1", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pvName}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: "node-1"}}}},
	)
	cl, err := ReadCluster(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	return s, cl
}

func kinds(cands []Candidate) []string {
	var out []string
	for _, c := range cands {
		out = append(out, c.Kind+" "+c.Name)
	}
	slices.Sort(out)
	return out
}

func TestFindWithoutClusterListsNoVolumeAsUnreferenced(t *testing.T) {
	s, _ := world(t)
	cands, errs := (&Finder{Backends: map[string]backend.Controller{"ceph-rbd": s}}).Find(context.Background())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []string{
		KindRecordless + " " + v("ceph-rbd", "shop", "pvc-half").ID.String(),
		KindStaleClient + " 10.9.9.9 on export 7 (" + s.vols[0].ID.String() + ")",
		KindTemporarySnapshot + " rbd/shop/csi-vol-1@csi-tmp-2",
		KindTemporarySnapshot + " rbd/shop/csi-vol-1@csi-tmp-3",
		"trash entry rbd/shop/abc",
	}
	if got := kinds(cands); !slices.Equal(got, want) {
		t.Fatalf("candidates:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFindWithClusterSparesEveryReferencedVolume(t *testing.T) {
	s, cl := world(t)
	cands, errs := (&Finder{Backends: map[string]backend.Controller{"ceph-rbd": s}, Cluster: cl}).Find(context.Background())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	db := s.vols[0].ID.String()
	want := []string{
		KindRecordless + " " + v("ceph-rbd", "shop", "pvc-half").ID.String(),
		KindStaleClient + " 10.0.0.2 on export 7 (" + db + ")",
		KindStaleClient + " 10.9.9.9 on export 7 (" + db + ")",
		KindTemporarySnapshot + " rbd/shop/csi-vol-1@csi-tmp-2",
		KindTemporarySnapshot + " rbd/shop/csi-vol-1@csi-tmp-3",
		"trash entry rbd/shop/abc",
		KindUnreferenced + " " + s.vols[2].ID.String(),
	}
	if got := kinds(cands); !slices.Equal(got, want) {
		t.Fatalf("candidates:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	blog, _ := (&Finder{Backends: map[string]backend.Controller{"ceph-rbd": s}, Cluster: cl, Tenant: "blog"}).Find(context.Background())
	if got := kinds(blog); !slices.Equal(got, want[len(want)-1:]) {
		t.Fatalf("blog's candidates: %v", got)
	}
	if by := cl.References(s.vols[1]); by != "VolumeAttachment csi-123" {
		t.Fatalf("pvc-web referenced by %q, want its VolumeAttachment", by)
	}
}

func TestRemoveGoesThroughTheBackend(t *testing.T) {
	s, cl := world(t)
	ctrls := map[string]backend.Controller{"ceph-rbd": s}
	cands, _ := (&Finder{Backends: ctrls, Cluster: cl}).Find(context.Background())
	// A second trash entry: Collect still runs once.
	cands = append(cands, Candidate{Backend: "ceph-rbd", Kind: "trash entry", Name: "rbd/shop/def"})
	res := Remove(context.Background(), ctrls, cands)
	states := map[string]string{}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s %s: %v", r.Kind, r.Name, r.Err)
		}
		states[r.Name] = r.State
	}
	// What the sweeps leave is reported as it stands; what they removed has no state.
	if states["rbd/shop/abc"] != "purge not queued" || states["rbd/shop/csi-vol-1@csi-tmp-2"] != "" ||
		states["rbd/shop/csi-vol-1@csi-tmp-3"] != "clone csi-vol-3 in progress" || s.snapSweeps != 1 {
		t.Fatalf("states after removal %v, %d snapshot sweeps", states, s.snapSweeps)
	}
	slices.Sort(s.deleted)
	wantDeleted := []string{s.vols[2].ID.String(), v("ceph-rbd", "shop", "pvc-half").ID.String()}
	slices.Sort(wantDeleted)
	if !slices.Equal(s.deleted, wantDeleted) || s.collects != 1 || len(s.dropped) != 2 {
		t.Fatalf("deleted %v (want %v), collects %d, dropped %v", s.deleted, wantDeleted, s.collects, s.dropped)
	}
	s.deleteErr = backend.Errorf(backend.FailedPrecondition, "image in use")
	res = Remove(context.Background(), ctrls, cands[:1])
	if res[0].Err == nil || !errors.Is(res[0].Err, s.deleteErr) {
		t.Fatalf("a refused delete: %v", res[0].Err)
	}
	res = Remove(context.Background(), map[string]backend.Controller{}, cands[:1])
	if res[0].Err == nil {
		t.Fatal("a candidate of an unconfigured backend was removed")
	}
}

func adopted(t *testing.T, b, tenant, object, pv string) *backend.Volume {
	t.Helper()
	id, err := volid.Adopted(b, tenant, "", object)
	if err != nil {
		t.Fatal(err)
	}
	return &backend.Volume{ID: id, RequestName: pv}
}

// An adopted volume no PV references is a candidate like any other; one that a PV still
// reaches is never one: its import's PV (by handle, or by name through a VolumeAttachment),
// and the legacy PV that mounted the object before the import re-bound it (an NFS PV on
// its directory or below, a ceph-csi or in-tree PV on its image or subvolume) (issue 12).
func TestFindSparesAdoptedVolumesAnyPVReaches(t *testing.T) {
	byHandle := adopted(t, "isi", "shop", "/ifs/data/site1", "pv-site1")
	byAttachment := adopted(t, "isi", "shop", "/ifs/data/site2", "pv-site2")
	byNFS := adopted(t, "isi", "shop", "/ifs/data/site3", "legacy-site3")
	byNFSBelow := adopted(t, "isi", "shop", "/ifs/data/site4", "legacy-site4")
	byCephCSI := adopted(t, "rbd", "shop", "/csi-vol-0a1b", "legacy-img")
	byCephFSCSI := adopted(t, "fs", "shop", "csi/csi-vol-legacy", "legacy-sub")
	byInTreeRBD := adopted(t, "rbd", "shop", "legacy/site-img", "legacy-intree")
	orphan := adopted(t, "isi", "blog", "/ifs/data/site9", "pv-gone")
	isi := &store{name: "isi", vols: []*backend.Volume{byHandle, byAttachment, byNFS, byNFSBelow, orphan}}
	rbd := &store{name: "rbd", vols: []*backend.Volume{byCephCSI, byInTreeRBD}}
	fs := &store{name: "fs", vols: []*backend.Volume{byCephFSCSI}}
	pv := func(name string, src corev1.PersistentVolumeSource) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: src}}
	}
	pvName := "pv-site2"
	client := fake.NewSimpleClientset(
		pv("pv-site1", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "shiphold.csi.io", VolumeHandle: byHandle.ID.String()}}),
		&storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "csi-9"},
			Spec: storagev1.VolumeAttachmentSpec{Attacher: "shiphold.csi.io", NodeName: "node-1", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pvName}}},
		pv("nfs-site3", corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "isilon.example", Path: "/ifs/data/site3/"}}),
		pv("nfs-site4", corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "isilon.example", Path: "/ifs/data/site4/www"}}),
		pv("ceph-csi-img", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "rbd.csi.ceph.com", VolumeHandle: "0001-0009-rook-0000000000000002-0a1b",
			VolumeAttributes: map[string]string{"pool": "rbd", "imageName": "csi-vol-0a1b"}}}),
		pv("ceph-csi-sub", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "cephfs.csi.ceph.com", VolumeHandle: "0001-0009-rook-0000000000000001-legacy",
			VolumeAttributes: map[string]string{"fsName": "cephfs", "subvolumeName": "csi-vol-legacy", "subvolumePath": "/volumes/csi/csi-vol-legacy/5e1f"}}}),
		pv("intree-rbd", corev1.PersistentVolumeSource{RBD: &corev1.RBDPersistentVolumeSource{RBDPool: "rbd", RBDImage: "site-img"}}),
	)
	cl, err := ReadCluster(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	ctrls := map[string]backend.Controller{"isi": isi, "rbd": rbd, "fs": fs}
	cands, errs := (&Finder{Backends: ctrls, Cluster: cl}).Find(context.Background())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []string{KindUnreferenced + " " + orphan.ID.String()}
	if got := kinds(cands); !slices.Equal(got, want) {
		t.Fatalf("candidates:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	Remove(context.Background(), ctrls, cands)
	if !slices.Equal(isi.deleted, []string{orphan.ID.String()}) || len(rbd.deleted)+len(fs.deleted) != 0 {
		t.Fatalf("deleted %v %v %v, want only %s", isi.deleted, rbd.deleted, fs.deleted, orphan.ID)
	}
}
