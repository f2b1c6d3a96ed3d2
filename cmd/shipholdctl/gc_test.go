package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// deleting is a backend whose deletes are recorded, or refused with refuse.
type deleting struct {
	collecting
	deleted   *[]string
	collected *int
	refuse    error
}

func (d deleting) Collect(context.Context) ([]backend.Leftover, error) {
	*d.collected++
	return d.left, nil
}

func (d deleting) DeleteVolume(_ context.Context, id volid.Volume, _ map[string]string) error {
	if d.refuse != nil {
		return d.refuse
	}
	*d.deleted = append(*d.deleted, id.String())
	return nil
}

func TestGCCommand(t *testing.T) {
	used, old := vol("ceph-rbd", "shop", "pvc-used", 1<<30), vol("ceph-rbd", "shop", "pvc-old", 1<<30)
	var deleted []string
	var collected int
	store := deleting{collecting: collecting{storage: storage{kind: "rbd", vols: []*backend.Volume{used, old}},
		left: []backend.Leftover{{Backend: "ceph-rbd", Tenant: "shop", Kind: "trash entry", Name: "rbd/shop/abc", State: "purge queued"}}},
		deleted: &deleted, collected: &collected}
	cfg := withStorage(t, map[string]backend.Controller{"ceph-rbd": store})
	prev := newKubeClient
	newKubeClient = func(string) (kubernetes.Interface, error) {
		return fake.NewSimpleClientset(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-x"},
			Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{VolumeHandle: used.ID.String()}}}}), nil
	}
	t.Cleanup(func() { newKubeClient = prev })

	var out, errb bytes.Buffer
	if code := run([]string{"gc", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("gc: exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String(), "unreferenced") || !strings.Contains(out.String(), "trash entry") || !strings.Contains(out.String(), "nothing removed") {
		t.Fatalf("gc without --kubeconfig:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"gc", "--config", cfg, "--kubeconfig", "k"}, &out, &errb); code != 0 || len(deleted) != 0 || collected != 0 {
		t.Fatalf("gc listing: exit %d, deleted %v: %s", code, deleted, errb.String())
	}
	if !strings.Contains(out.String(), "unreferenced volume  "+old.ID.String()) || strings.Contains(out.String(), used.ID.String()) {
		t.Fatalf("gc --kubeconfig:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"gc", "--config", cfg, "--kubeconfig", "k", "--confirm"}, &out, &errb); code != 0 {
		t.Fatalf("gc --confirm: exit %d: %s", code, errb.String())
	}
	if len(deleted) != 1 || deleted[0] != old.ID.String() || !strings.Contains(out.String(), "removed unreferenced volume "+old.ID.String()) ||
		!strings.Contains(out.String(), "collected trash entry rbd/shop/abc: purge queued") || collected != 1 {
		t.Fatalf("gc --confirm: deleted %v:\n%s", deleted, out.String())
	}
	store.refuse = backend.Errorf(backend.FailedPrecondition, "image in use")
	cfg = withStorage(t, map[string]backend.Controller{"ceph-rbd": store})
	errb.Reset()
	if code := run([]string{"gc", "--config", cfg, "--kubeconfig", "k", "--confirm"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "image in use") {
		t.Fatalf("gc --confirm with a refused delete: exit %d: %s", code, errb.String())
	}
}
