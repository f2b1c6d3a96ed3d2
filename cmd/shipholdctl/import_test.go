package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// adopting is a backend that adopts what it is asked, or refuses with refuse.
type adopting struct {
	storage
	asked  *[]backend.AdoptRequest
	refuse error
}

func (a adopting) Adopt(_ context.Context, req *backend.AdoptRequest) (*backend.Volume, error) {
	if a.refuse != nil {
		return nil, a.refuse
	}
	*a.asked = append(*a.asked, *req)
	id, _ := volid.Adopted("isilon", req.Tenant, "", req.Object)
	return &backend.Volume{ID: id, CapacityBytes: max(req.SizeBytes, 1<<20), Context: map[string]string{"exportPath": req.Object}}, nil
}

func TestImportOnePrintsBoundManifests(t *testing.T) {
	var asked []backend.AdoptRequest
	cfg := withStorage(t, map[string]backend.Controller{"isilon": adopting{storage: storage{kind: "isilon"}, asked: &asked}})
	var out, errb bytes.Buffer
	code := run([]string{"import", "--config", cfg, "--backend", "isilon", "--tenant", "shop", "--size", "2Gi", "/ifs/legacy/site42"}, &out, &errb)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, errb.String())
	}
	id, _ := volid.Adopted("isilon", "shop", "", "/ifs/legacy/site42")
	if len(asked) != 1 || asked[0].Object != "/ifs/legacy/site42" || asked[0].Tenant != "shop" || asked[0].SizeBytes != 2<<30 {
		t.Fatalf("adoption asked %+v", asked)
	}
	for _, want := range []string{"volumeHandle: " + id.String(), "kind: PersistentVolumeClaim", "namespace: shop", "name: site42", "volumeName: shiphold-" + volid.Hash(id.String()), "persistentVolumeReclaimPolicy: Retain", "- ReadWriteMany"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("manifests lack %q:\n%s", want, out.String())
		}
	}
	errb.Reset()
	if code := run([]string{"import", "--config", cfg, "--backend", "isilon", "/ifs/x"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--tenant") {
		t.Fatalf("import without --tenant: exit %d: %s", code, errb.String())
	}
	refusing := adopting{storage: storage{kind: "isilon"}, asked: &asked, refuse: backend.Errorf(backend.AlreadyExists, "isilon: /ifs/x is already managed by shiphold")}
	cfg = withStorage(t, map[string]backend.Controller{"isilon": refusing})
	errb.Reset()
	if code := run([]string{"import", "--config", cfg, "--backend", "isilon", "--tenant", "t", "/ifs/x"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "already managed") {
		t.Fatalf("refused import: exit %d: %s", code, errb.String())
	}
}

func TestImportFromPVs(t *testing.T) {
	var asked []backend.AdoptRequest
	cfg := withStorage(t, map[string]backend.Controller{"isilon": adopting{storage: storage{kind: "isilon"}, asked: &asked}})
	class := ""
	size := *resource.NewQuantity(1<<30, resource.BinarySI)
	client := fake.NewSimpleClientset(
		&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-site"}, Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: size}, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain, ClaimRef: &corev1.ObjectReference{Namespace: "shop", Name: "site"},
			PersistentVolumeSource: corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "n", Path: "/ifs/legacy/site"}}}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "shop"}, Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class, VolumeName: "pv-site", Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "isilon"}, Provisioner: driverName, Parameters: map[string]string{"backend": "isilon"}})
	client.PrependReactor("create", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if p := a.(k8stesting.CreateAction).GetObject().(*corev1.PersistentVolumeClaim); p.Spec.VolumeName != "" {
			p.Status.Phase = corev1.ClaimBound
		}
		return false, nil, nil
	})
	prev := newKubeClient
	newKubeClient = func(string) (kubernetes.Interface, error) { return client, nil }
	t.Cleanup(func() { newKubeClient = prev })

	var out, errb bytes.Buffer
	if code := run([]string{"import", "--config", cfg, "--backend", "isilon", "--from-pvs", "--kubeconfig", "k", "--nfs-server", "n"}, &out, &errb); code != 0 || len(asked) != 0 {
		t.Fatalf("dry run: exit %d, adopted %+v: %s", code, asked, errb.String())
	}
	if !strings.Contains(out.String(), "pv-site  shop/site  /ifs/legacy/site  1.0 GiB  adoptable") || !strings.Contains(out.String(), "nothing changed") {
		t.Fatalf("dry run output:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"import", "--config", cfg, "--backend", "isilon", "--from-pvs", "--kubeconfig", "k", "--nfs-server", "n", "--apply"}, &out, &errb); code != 0 {
		t.Fatalf("--apply: exit %d: %s", code, errb.String())
	}
	pvc, _ := client.CoreV1().PersistentVolumeClaims("shop").Get(context.Background(), "site", metav1.GetOptions{})
	if len(asked) != 1 || !strings.HasPrefix(pvc.Spec.VolumeName, "shiphold-") || !strings.Contains(out.String(), "adopted PV pv-site: claim shop/site is on PV "+pvc.Spec.VolumeName) {
		t.Fatalf("--apply: adopted %+v, claim on %q:\n%s", asked, pvc.Spec.VolumeName, out.String())
	}
}

// An adopted Ceph volume outside its tenant's place gets no tenant identity at publish: the
// PV must name the node-stage secret its node stages it with (the node holds no key).
func TestImportNamesTheNodeStageSecret(t *testing.T) {
	var asked []backend.AdoptRequest
	cfg := withStorage(t, map[string]backend.Controller{"rbd": adopting{storage: storage{kind: "rbd"}, asked: &asked}})
	var out, errb bytes.Buffer
	if code := run([]string{"import", "--config", cfg, "--backend", "rbd", "--tenant", "shop", "--node-stage-secret", "ceph-csi/node-key", "rbd//csi-vol-legacy"}, &out, &errb); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"nodeStageSecretRef:", "name: node-key", "namespace: ceph-csi"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("manifests lack %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"import", "--config", cfg, "--backend", "rbd", "--tenant", "shop", "rbd//csi-vol-other"}, &out, &errb); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String(), "nodeStageSecretRef") || !strings.Contains(errb.String(), "--node-stage-secret") {
		t.Fatalf("a Ceph import without --node-stage-secret must say what its node stages with:\n%s\n%s", out.String(), errb.String())
	}
	if code := run([]string{"import", "--config", cfg, "--backend", "rbd", "--tenant", "shop", "--node-stage-secret", "nonamespace", "rbd//x"}, &out, &errb); code != 2 {
		t.Fatalf("a secret without its namespace: exit %d", code)
	}
}

// The access zone an adopted Isilon directory is looked up (and exported) in comes from
// --access-zone, or from the StorageClass's parameters (--storage-class with --kubeconfig);
// the two must agree. --from-pvs takes it too, and then finds the PVs on the zone's
// SmartConnect name (issue 12).
func TestImportTakesTheAccessZone(t *testing.T) {
	var asked []backend.AdoptRequest
	cfg := withStorage(t, map[string]backend.Controller{"isilon": adopting{storage: storage{kind: "isilon"}, asked: &asked},
		"ceph-rbd": adopting{storage: storage{kind: "rbd"}, asked: &asked}})
	classes := fake.NewSimpleClientset(
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "isilon-hpc"}, Provisioner: driverName, Parameters: map[string]string{
			"backend": "isilon", "accessZone": "hpc", "nfsServer": "sc-hpc-fast", "csi.storage.k8s.io/provisioner-secret-name": "isilon"}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "rbd"}, Provisioner: driverName, Parameters: map[string]string{"backend": "ceph-rbd"}})
	prev := newKubeClient
	newKubeClient = func(string) (kubernetes.Interface, error) { return classes, nil }
	t.Cleanup(func() { newKubeClient = prev })
	imp := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"import", "--config", cfg, "--tenant", "shop"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, _, errb := imp("--backend", "isilon", "--size", "1Gi", "--access-zone", "hpc", "/ifs/hpc/site1"); code != 0 || asked[len(asked)-1].Parameters["accessZone"] != "hpc" {
		t.Fatalf("--access-zone hpc: exit %d, asked %+v: %s", code, asked, errb)
	}
	code, out, errb := imp("--backend", "isilon", "--size", "1Gi", "--storage-class", "isilon-hpc", "--kubeconfig", "k", "/ifs/hpc/site2")
	if p := asked[len(asked)-1].Parameters; code != 0 || p["accessZone"] != "hpc" || p["nfsServer"] != "sc-hpc-fast" || p["backend"] != "" || len(p) != 2 {
		t.Fatalf("--storage-class isilon-hpc: exit %d, recorded parameters %v, want the class's accessZone and nfsServer only: %s", code, p, errb)
	}
	if !strings.Contains(out, "storageClassName: isilon-hpc") {
		t.Fatalf("manifests do not name the class:\n%s", out)
	}
	if code, _, errb := imp("--backend", "isilon", "--storage-class", "isilon-hpc", "--kubeconfig", "k", "--access-zone", "System", "/ifs/hpc/site3"); code != 2 || !strings.Contains(errb, `"hpc"`) || !strings.Contains(errb, `"System"`) {
		t.Fatalf("--access-zone against the class's zone: exit %d: %s", code, errb)
	}
	if code, _, errb := imp("--backend", "isilon", "--storage-class", "rbd", "--kubeconfig", "k", "/ifs/hpc/site3"); code != 2 || !strings.Contains(errb, "ceph-rbd") {
		t.Fatalf("a class of another backend: exit %d: %s", code, errb)
	}
	if code, _, errb := imp("--backend", "ceph-rbd", "--access-zone", "hpc", "rbd//img"); code != 2 || !strings.Contains(errb, "isilon") {
		t.Fatalf("--access-zone on an rbd backend: exit %d: %s", code, errb)
	}

	size := *resource.NewQuantity(1<<30, resource.BinarySI)
	legacy := fake.NewSimpleClientset(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-hpc"}, Spec: corev1.PersistentVolumeSpec{
		Capacity: corev1.ResourceList{corev1.ResourceStorage: size}, ClaimRef: &corev1.ObjectReference{Namespace: "shop", Name: "hpc"},
		PersistentVolumeSource: corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "sc-hpc", Path: "/ifs/hpc/site4"}}}})
	newKubeClient = func(string) (kubernetes.Interface, error) { return legacy, nil }
	var o, e bytes.Buffer
	if code := run([]string{"import", "--config", cfg, "--backend", "isilon", "--from-pvs", "--kubeconfig", "k", "--access-zone", "hpc"}, &o, &e); code != 0 || !strings.Contains(o.String(), "pv-hpc") {
		t.Fatalf("--from-pvs --access-zone hpc finds the PVs on the zone's SmartConnect name sc-hpc: exit %d:\n%s%s", code, o.String(), e.String())
	}
	n := len(asked)
	o.Reset()
	run([]string{"import", "--config", cfg, "--backend", "isilon", "--from-pvs", "--kubeconfig", "k", "--access-zone", "hpc", "--apply"}, &o, &e)
	if len(asked) != n+1 || asked[n].Parameters["accessZone"] != "hpc" {
		t.Fatalf("--from-pvs --apply --access-zone hpc adopted %+v, want /ifs/hpc/site4 in zone hpc:\n%s%s", asked[n:], o.String(), e.String())
	}
}
