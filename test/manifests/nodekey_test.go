package manifests

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/yaml"
)

// nodeSecretParams are the class parameters whose Secret kubelet hands the node plugin.
var nodeSecretParams = []string{
	"csi.storage.k8s.io/node-stage-secret-name",
	"csi.storage.k8s.io/node-publish-secret-name",
	"csi.storage.k8s.io/node-expand-secret-name",
}

// nodeKeyPaths lists every way the objects give the node plugin a Secret, so a cluster-wide
// Ceph key: a Secret volume or env var in the node DaemonSet, RBAC on Secrets for its
// ServiceAccount, or a Ceph class whose node-side operations get a secret.
func nodeKeyPaths(objs []Object) []string {
	var found []string
	cephBackends := map[string]bool{}
	for _, o := range objs {
		if cm, ok := o.Obj.(*corev1.ConfigMap); ok && cm.Name == "shiphold-config" {
			var cfg struct {
				Backends []struct{ Name, Kind string } `json:"backends"`
			}
			if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
				found = append(found, "config.yaml does not parse: "+err.Error())
			}
			for _, b := range cfg.Backends {
				cephBackends[b.Name] = b.Kind == "rbd" || b.Kind == "cephfs"
			}
		}
	}
	for _, o := range objs {
		switch obj := o.Obj.(type) {
		case *appsv1.DaemonSet:
			if obj.Name == "shiphold-node" {
				found = append(found, podSecrets("DaemonSet/shiphold-node", obj.Spec.Template.Spec)...)
			}
		case *rbacv1.ClusterRole:
			if obj.Name == "shiphold-node" {
				found = append(found, secretRules("ClusterRole/shiphold-node", obj.Rules)...)
			}
		case *rbacv1.Role:
			if obj.Name == "shiphold-node" {
				found = append(found, secretRules("Role/shiphold-node", obj.Rules)...)
			}
		case *storagev1.StorageClass:
			if !cephBackends[obj.Parameters["backend"]] {
				continue
			}
			for _, p := range nodeSecretParams {
				if s, ok := obj.Parameters[p]; ok {
					found = append(found, fmt.Sprintf("StorageClass/%s (Ceph backend %s): %s=%s reaches the node", obj.Name, obj.Parameters["backend"], p, s))
				}
			}
		}
	}
	return found
}

func podSecrets(where string, ps corev1.PodSpec) []string {
	var found []string
	for _, v := range ps.Volumes {
		if v.Secret != nil {
			found = append(found, fmt.Sprintf("%s: volume %s is Secret %s", where, v.Name, v.Secret.SecretName))
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					found = append(found, fmt.Sprintf("%s: volume %s projects Secret %s", where, v.Name, src.Secret.Name))
				}
			}
		}
	}
	for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				found = append(found, fmt.Sprintf("%s: container %s env %s from Secret %s", where, c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name))
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				found = append(found, fmt.Sprintf("%s: container %s env from Secret %s", where, c.Name, e.SecretRef.Name))
			}
		}
	}
	return found
}

func secretRules(where string, rules []rbacv1.PolicyRule) []string {
	var found []string
	for _, r := range rules {
		if slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*") {
			found = append(found, fmt.Sprintf("%s: may %v %v", where, r.Verbs, r.Resources))
		}
	}
	return found
}

// The node plugin holds no cluster-wide Ceph key: nodes mount with the tenant identity
// ControllerPublishVolume hands them (README, Tenant identities). Plain manifests and chart.
func TestNodePluginGetsNoClusterKey(t *testing.T) {
	for name, objs := range map[string][]Object{"plain": plainObjects(t), "chart": chartObjects(t, nil)} {
		if found := nodeKeyPaths(objs); len(found) > 0 {
			t.Errorf("%s: the node plugin can get a Ceph key:\n  %s", name, strings.Join(found, "\n  "))
		}
	}
}

// nodeKeyPaths sees each way a key could reach the node, or the test above proves nothing.
func TestNodeKeyPathsAreFound(t *testing.T) {
	mutate := func(objs []Object, kind, name string, change func(any)) []Object {
		out := make([]Object, len(objs))
		for i, o := range objs {
			out[i] = o
			if o.GVK.Kind == kind && key(o) == kind+"/"+name {
				out[i].Obj = o.Obj.DeepCopyObject()
				change(out[i].Obj)
			}
		}
		return out
	}
	testCases := []struct {
		name, kind, obj, want string
		change                func(any)
	}{
		{"secret volume", "DaemonSet", "shiphold-node", "volume ceph-key is Secret shiphold-backend-rbd", func(o any) {
			ps := &o.(*appsv1.DaemonSet).Spec.Template.Spec
			ps.Volumes = append(ps.Volumes, corev1.Volume{Name: "ceph-key", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "shiphold-backend-rbd"}}})
		}},
		{"env from secret", "DaemonSet", "shiphold-node", "env CEPH_KEY from Secret shiphold-ceph-rbd", func(o any) {
			c := &o.(*appsv1.DaemonSet).Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "CEPH_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "shiphold-ceph-rbd"}, Key: "userKey"}}})
		}},
		{"rbac on secrets", "ClusterRole", "shiphold-node", "may [get] [secrets]", func(o any) {
			r := o.(*rbacv1.ClusterRole)
			r.Rules = append(r.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
		}},
		{"node-stage secret on a Ceph class", "StorageClass", "shiphold-cephfs", "node-stage-secret-name=shiphold-cephfs reaches the node", func(o any) {
			o.(*storagev1.StorageClass).Parameters["csi.storage.k8s.io/node-stage-secret-name"] = "shiphold-cephfs"
		}},
	}
	plain := plainObjects(t)
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			found := nodeKeyPaths(mutate(plain, tc.kind, tc.obj, tc.change))
			if len(found) != 1 || !strings.Contains(found[0], tc.want) {
				t.Fatalf("found %q, want one finding with %q", found, tc.want)
			}
		})
	}
	// A chart whose Ceph class passes node-stage secrets is caught too; an Isilon class's
	// secrets are not a Ceph key.
	objs := chartObjects(t, map[string]any{"storageClasses": []any{
		map[string]any{"name": "rbd-old", "backend": "ceph-rbd", "secret": "ceph-rbd", "secretKinds": []any{"provisioner", "node-stage"}},
		map[string]any{"name": "nfs", "backend": "isilon", "secret": "isilon", "secretKinds": []any{"node-stage"}},
	}})
	if found := nodeKeyPaths(objs); len(found) != 1 || !strings.Contains(found[0], "StorageClass/rbd-old") {
		t.Fatalf("chart with a node-stage secret on a Ceph class: found %q", found)
	}
}
