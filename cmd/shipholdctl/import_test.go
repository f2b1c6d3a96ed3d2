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
