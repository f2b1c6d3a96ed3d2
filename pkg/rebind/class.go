package rebind

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// ClassFor finds the StorageClass of driver whose parameter backend names backendName (the
// first by name), and sets on nv its name and the secret references its parameters give a
// PV of claim.
func ClassFor(ctx context.Context, c kubernetes.Interface, driver, backendName string, claim types.NamespacedName, nv *NewVolume) error {
	classes, err := c.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list storage classes: %w", err)
	}
	for _, sc := range classes.Items {
		if sc.Provisioner != driver || sc.Parameters["backend"] != backendName {
			continue
		}
		refs := []**corev1.SecretReference{&nv.NodeStageSecret, &nv.NodePublishSecret, &nv.ControllerExpandSecret}
		for i, kind := range []string{"node-stage", "node-publish", "controller-expand"} {
			name := sc.Parameters["csi.storage.k8s.io/"+kind+"-secret-name"]
			ns := sc.Parameters["csi.storage.k8s.io/"+kind+"-secret-namespace"]
			if name != "" {
				r := strings.NewReplacer("${pvc.namespace}", claim.Namespace, "${pvc.name}", claim.Name)
				*refs[i] = &corev1.SecretReference{Name: r.Replace(name), Namespace: r.Replace(ns)}
			}
		}
		nv.StorageClass = sc.Name
		return nil
	}
	return fmt.Errorf("no StorageClass of %s has parameter backend=%s: create one for that backend first", driver, backendName)
}
