package rebind

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var claim = types.NamespacedName{Namespace: "shop", Name: "data"}

// cluster holds a legacy NFS volume bound to shop/data. The fake API server has no binder:
// a reactor binds each claim created with a volumeName, as the PV controller would.
func cluster(t *testing.T) *fake.Clientset {
	class := "legacy-nfs"
	old := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-isilon-shop"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: quantity(5 << 30)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              class,
			ClaimRef:                      &corev1.ObjectReference{Namespace: "shop", Name: "data", UID: "uid-1"},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "isilon", Path: "/ifs/shop"}},
		},
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop", UID: "uid-1",
			Labels:      map[string]string{"app": "shop"},
			Annotations: map[string]string{"team": "web", "pv.kubernetes.io/bind-completed": "yes"}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: old.Spec.AccessModes, StorageClassName: &class, VolumeName: old.Name,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: quantity(5 << 30)}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	c := fake.NewSimpleClientset(old, pvc)
	c.PrependReactor("create", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.PersistentVolumeClaim)
		if p.Spec.VolumeName != "" {
			p.Status.Phase = corev1.ClaimBound
		}
		return false, nil, nil
	})
	return c
}

func newVolume() NewVolume {
	return NewVolume{Name: "shiphold-0123456789abcdef", Driver: "shiphold.csi.io", Handle: "v1:ceph-fs:shop:1:0123456789abcdef",
		Attributes: map[string]string{"fsName": "cephfs"}, CapacityBytes: 5 << 30, StorageClass: "shiphold-cephfs"}
}

func mover(c *fake.Clientset) *Mover {
	return &Mover{Client: c, Timeout: 5 * time.Second}
}

func pv(t *testing.T, c *fake.Clientset, name string) *corev1.PersistentVolume {
	t.Helper()
	p, err := c.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pvcOf(t *testing.T, c *fake.Clientset) *corev1.PersistentVolumeClaim {
	t.Helper()
	p, err := c.CoreV1().PersistentVolumeClaims("shop").Get(context.Background(), "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMoveRefusedWhileAPodMountsTheClaim(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	c.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}, metav1.CreateOptions{})
	err := mover(c).Move(ctx, claim, newVolume())
	if err == nil || !strings.Contains(err.Error(), "web-0") {
		t.Fatalf("move with a pod mounting the claim: %v", err)
	}
	if p := pv(t, c, "pv-isilon-shop"); p.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || p.Annotations[AnnReplacedBy] != "" {
		t.Fatalf("the refused move changed the old volume: %+v", p)
	}
}

func TestMoveAndRollback(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	nv := newVolume()
	if err := mover(c).Move(ctx, claim, nv); err != nil {
		t.Fatal(err)
	}
	old := pv(t, c, "pv-isilon-shop")
	if old.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || old.Annotations[AnnReplacedBy] != nv.Name {
		t.Fatalf("old volume not retained: %+v", old.Spec.PersistentVolumeReclaimPolicy)
	}
	moved := pv(t, c, nv.Name)
	if moved.Spec.CSI == nil || moved.Spec.CSI.VolumeHandle != nv.Handle || moved.Spec.ClaimRef.Name != "data" || moved.Spec.AccessModes[0] != corev1.ReadWriteMany {
		t.Fatalf("new volume: %+v", moved.Spec)
	}
	p := pvcOf(t, c)
	if p.Spec.VolumeName != nv.Name || p.Labels["app"] != "shop" || p.Annotations["team"] != "web" || p.Annotations["pv.kubernetes.io/bind-completed"] != "" {
		t.Fatalf("claim after the move: %+v", p.ObjectMeta)
	}
	if err := mover(c).Move(ctx, claim, nv); err != nil {
		t.Fatalf("a second move is a no-op: %v", err)
	}

	if err := mover(c).Rollback(ctx, claim); err != nil {
		t.Fatal(err)
	}
	p = pvcOf(t, c)
	if p.Spec.VolumeName != "pv-isilon-shop" || *p.Spec.StorageClassName != "legacy-nfs" || p.Labels["app"] != "shop" {
		t.Fatalf("claim after rollback: %+v", p)
	}
	old = pv(t, c, "pv-isilon-shop")
	if old.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || old.Annotations[AnnOriginalClaim] != "" {
		t.Fatalf("old volume not restored: %v %v", old.Spec.PersistentVolumeReclaimPolicy, old.Annotations)
	}
	if pv(t, c, nv.Name).Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Fatal("the migrated copy is not kept after a rollback")
	}
}

// A move that stops after deleting the claim (the API refuses the new claim once) is
// continued by running it again: the old volume records where the claim was going.
func TestMoveContinuesAfterAFailure(t *testing.T) {
	c := cluster(t)
	var fail atomic.Bool
	fail.Store(true)
	c.PrependReactor("create", "persistentvolumeclaims", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail.Swap(false) {
			return true, nil, errors.New("etcd timeout")
		}
		return false, nil, nil
	})
	ctx := context.Background()
	nv := newVolume()
	if err := mover(c).Move(ctx, claim, nv); err == nil || !strings.Contains(err.Error(), "etcd timeout") {
		t.Fatalf("first move: %v", err)
	}
	if _, err := c.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{}); err == nil {
		t.Fatal("the claim should be gone after the interrupted move")
	}
	if err := mover(c).Move(ctx, claim, nv); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if p := pvcOf(t, c); p.Spec.VolumeName != nv.Name || p.Labels["app"] != "shop" {
		t.Fatalf("claim after the rerun: %+v", p)
	}
}
