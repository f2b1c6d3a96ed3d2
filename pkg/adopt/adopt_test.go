package adopt

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/rebind"
	"github.com/shiphold/shiphold/pkg/volid"
)

// fakeIsilon adopts every directory it is asked for, recording the requests; the
// backend's own Adopt is tested in pkg/backend/isilon against its fake array.
type fakeIsilon struct {
	backend.Controller // unused methods
	adopted            []backend.AdoptRequest
}

func (f *fakeIsilon) Name() string { return "isilon" }
func (f *fakeIsilon) Kind() string { return backend.KindIsilon }
func (f *fakeIsilon) Adopt(_ context.Context, req *backend.AdoptRequest) (*backend.Volume, error) {
	f.adopted = append(f.adopted, *req)
	id, err := volid.Adopted("isilon", req.Tenant, "", req.Object)
	if err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "%v", err)
	}
	return &backend.Volume{ID: id, CapacityBytes: req.SizeBytes, Context: map[string]string{"exportPath": req.Object}}, nil
}

func nfsPV(name, server, path string, claim *corev1.ObjectReference, policy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(5<<30, resource.BinarySI)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: policy,
			ClaimRef:                      claim,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: server, Path: path}},
		},
	}
}

func boundClaim(ns, name, pv string) *corev1.PersistentVolumeClaim {
	class := ""
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, StorageClassName: &class, VolumeName: pv,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(5<<30, resource.BinarySI)}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
}

// legacyCluster has four NFS PVs on the Isilon (bound and idle, bound and mounted by a
// running pod, unbound, on another server) and a shiphold class for the backend.
func legacyCluster() *fake.Clientset {
	ref := func(ns, n string) *corev1.ObjectReference { return &corev1.ObjectReference{Namespace: ns, Name: n} }
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "blog"},
		Spec:   corev1.PodSpec{Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "shiphold-isilon"}, Provisioner: Driver, Parameters: map[string]string{"backend": "isilon"}}
	c := fake.NewSimpleClientset(
		nfsPV("pv-shop", "isilon-nfs", "/ifs/legacy/shop", ref("shop", "data"), corev1.PersistentVolumeReclaimRetain), boundClaim("shop", "data", "pv-shop"),
		nfsPV("pv-blog", "isilon-nfs", "/ifs/legacy/blog", ref("blog", "data"), corev1.PersistentVolumeReclaimDelete), boundClaim("blog", "data", "pv-blog"), pod,
		nfsPV("pv-spare", "isilon-nfs", "/ifs/legacy/spare", nil, corev1.PersistentVolumeReclaimRetain),
		nfsPV("pv-elsewhere", "other-nfs", "/ifs/legacy/x", ref("shop", "x"), corev1.PersistentVolumeReclaimRetain),
		class)
	// No PV controller here: bind each claim created with a volumeName, as it would.
	c.PrependReactor("create", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if p := a.(k8stesting.CreateAction).GetObject().(*corev1.PersistentVolumeClaim); p.Spec.VolumeName != "" {
			p.Status.Phase = corev1.ClaimBound
		}
		return false, nil, nil
	})
	return c
}

func TestFromPVsDryRunJudgesEachPV(t *testing.T) {
	isi := &fakeIsilon{}
	f := &FromPVs{Client: legacyCluster(), Controllers: map[string]backend.Controller{"isilon": isi}, Backend: "isilon", Servers: []string{"isilon-nfs"}}
	found, err := f.Find(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Legacy{}
	for _, l := range found {
		got[l.PV] = l
	}
	if len(found) != 3 || got["pv-elsewhere"].PV != "" {
		t.Fatalf("found %+v, want the three PVs on isilon-nfs", found)
	}
	if l := got["pv-shop"]; l.Refusal != "" || l.Claim != (types.NamespacedName{Namespace: "shop", Name: "data"}) || l.Path != "/ifs/legacy/shop" {
		t.Fatalf("pv-shop: %+v, want adoptable for shop/data", l)
	}
	if l := got["pv-blog"]; !strings.Contains(l.Refusal, "in use by pod web-0") {
		t.Fatalf("pv-blog: %+v, want refused while pod web-0 mounts it", l)
	}
	if l := got["pv-spare"]; !strings.Contains(l.Refusal, "no claim") {
		t.Fatalf("pv-spare: %+v, want refused without a claim", l)
	}
	if len(isi.adopted) != 0 {
		t.Fatalf("a dry run adopted %+v", isi.adopted)
	}
	if _, err := f.Apply(context.Background(), got["pv-blog"]); err == nil || len(isi.adopted) != 0 {
		t.Fatalf("Apply of a PV in use: %v, adopted %+v", err, isi.adopted)
	}
}

func TestFromPVsApplyRebindsTheClaimKeepingThePolicy(t *testing.T) {
	c := legacyCluster()
	isi := &fakeIsilon{}
	var log bytes.Buffer
	f := &FromPVs{Client: c, Controllers: map[string]backend.Controller{"isilon": isi}, Backend: "isilon", Servers: []string{"isilon-nfs"}, Log: &log}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	found, _ := f.Find(ctx)
	v, err := f.Apply(ctx, found[1]) // pv-shop
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if want := (backend.AdoptRequest{Object: "/ifs/legacy/shop", Tenant: "shop", Name: "pv-shop", SizeBytes: 5 << 30}); len(isi.adopted) != 1 || isi.adopted[0].Object != want.Object ||
		isi.adopted[0].Tenant != want.Tenant || isi.adopted[0].Name != want.Name || isi.adopted[0].SizeBytes != want.SizeBytes {
		t.Fatalf("adopted %+v, want %+v", isi.adopted, want)
	}
	pv, err := c.CoreV1().PersistentVolumes().Get(ctx, PVName(v), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.CSI.VolumeHandle != v.ID.String() || !strings.HasPrefix(pv.Spec.CSI.VolumeHandle, "a1:isilon:shop::") ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Spec.StorageClassName != "shiphold-isilon" ||
		pv.Spec.AccessModes[0] != corev1.ReadWriteMany || pv.Spec.ClaimRef.Name != "data" {
		t.Fatalf("new PV %+v", pv.Spec)
	}
	pvc, _ := c.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{})
	if pvc.Spec.VolumeName != pv.Name || pvc.Labels["app"] != "data" {
		t.Fatalf("claim after apply: %+v", pvc)
	}
	old, _ := c.CoreV1().PersistentVolumes().Get(ctx, "pv-shop", metav1.GetOptions{})
	if old.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || old.Annotations[rebind.AnnReplacedBy] != pv.Name {
		t.Fatalf("old PV after apply: %+v", old)
	}
	// A second run finds it done and adopts nothing again.
	again, _ := f.Find(ctx)
	if again[1].Done != pv.Name {
		t.Fatalf("second run: %+v, want pv-shop done", again[1])
	}
}

func TestFromPVsRefusesAPVNameHoldingAnotherVolume(t *testing.T) {
	c := legacyCluster()
	isi := &fakeIsilon{}
	id, _ := volid.Adopted("isilon", "shop", "", "/ifs/legacy/shop")
	squatter := nfsPV(PVName(&backend.Volume{ID: id}), "elsewhere", "/x", nil, corev1.PersistentVolumeReclaimRetain)
	if _, err := c.CoreV1().PersistentVolumes().Create(context.Background(), squatter, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &FromPVs{Client: c, Controllers: map[string]backend.Controller{"isilon": isi}, Backend: "isilon", Servers: []string{"isilon-nfs"}}
	found, _ := f.Find(context.Background())
	if _, err := f.Apply(context.Background(), found[1]); err == nil || !strings.Contains(err.Error(), "exists and is not volume") {
		t.Fatalf("Apply over a PV of the same name: %v", err)
	}
	if pvc, _ := c.CoreV1().PersistentVolumeClaims("shop").Get(context.Background(), "data", metav1.GetOptions{}); pvc.Spec.VolumeName != "pv-shop" {
		t.Fatalf("claim moved to %s", pvc.Spec.VolumeName)
	}
}

func TestManifestsBindThePVCToTheAdoptedVolume(t *testing.T) {
	id, _ := volid.Adopted("ceph-rbd", "shop", "2", "/csi-vol-legacy")
	v := &backend.Volume{ID: id, CapacityBytes: 1 << 30, Context: map[string]string{"pool": "rbd"}}
	out, err := Manifests(v, Claim{Namespace: "shop", Name: "db", AccessMode: corev1.ReadWriteOnce, ReclaimPolicy: corev1.PersistentVolumeReclaimRetain, FsType: "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "---\n")
	var pv corev1.PersistentVolume
	var pvc corev1.PersistentVolumeClaim
	if len(docs) != 2 || yaml.Unmarshal([]byte(docs[0]), &pv) != nil || yaml.Unmarshal([]byte(docs[1]), &pvc) != nil {
		t.Fatalf("manifests:\n%s", out)
	}
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	if pv.Spec.CSI.VolumeHandle != id.String() || size.Value() != 1<<30 || pv.Spec.ClaimRef.Namespace != "shop" || pv.Spec.ClaimRef.Name != "db" ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Spec.CSI.FSType != "ext4" {
		t.Fatalf("PV %+v", pv.Spec)
	}
	if pvc.Spec.VolumeName != pv.Name || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "" || pvc.Namespace != "shop" {
		t.Fatalf("PVC %+v", pvc)
	}
}

func TestAdoptRefusesUnknownBackend(t *testing.T) {
	_, err := Adopt(context.Background(), map[string]backend.Controller{}, Request{Backend: "nope", AdoptRequest: backend.AdoptRequest{Object: "/ifs/x", Tenant: "t", Name: "n"}})
	if err == nil || !strings.Contains(err.Error(), `no backend "nope"`) {
		t.Fatalf("Adopt on an unknown backend: %v", err)
	}
}
