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
