package adopt

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Driver is the CSI driver name the PVs name.
const Driver = "shiphold.csi.io"

// Claim says how the PV and PVC printed for an adopted volume look.
type Claim struct {
	Namespace, Name string
	AccessMode      corev1.PersistentVolumeAccessMode
	ReclaimPolicy   corev1.PersistentVolumeReclaimPolicy
	StorageClass    string
	Block           bool
	FsType          string
	// NodeStageSecret is the Secret a node stages the volume with, for a Ceph volume
	// outside its tenant's place (published without the tenant's identity).
	NodeStageSecret *corev1.SecretReference
}

// PVName is the PV of an adopted volume: its whole ID's hash, so that the same path on
// two backends gets two names.
func PVName(v *backend.Volume) string { return "shiphold-" + volid.Hash(v.ID.String()) }

// Manifests are the PV of v, pre-bound to the claim, and the claim bound to it, as YAML.
func Manifests(v *backend.Volume, c Claim) ([]byte, error) {
	mode := corev1.PersistentVolumeFilesystem
	if c.Block {
		mode = corev1.PersistentVolumeBlock
	}
	size := *resource.NewQuantity(v.CapacityBytes, resource.BinarySI)
	pv := &corev1.PersistentVolume{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: metav1.ObjectMeta{Name: PVName(v), Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": Driver}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{c.AccessMode},
			VolumeMode:                    &mode,
			PersistentVolumeReclaimPolicy: c.ReclaimPolicy,
			StorageClassName:              c.StorageClass,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: c.Namespace, Name: c.Name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: Driver, VolumeHandle: v.ID.String(), VolumeAttributes: v.Context, FSType: c.FsType,
				NodeStageSecretRef: c.NodeStageSecret,
			}},
		},
	}
	class := c.StorageClass
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      pv.Spec.AccessModes,
			VolumeMode:       &mode,
			StorageClassName: &class, // "" binds statically, never through a default class
			VolumeName:       pv.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	a, err := yaml.Marshal(pv)
	if err != nil {
		return nil, err
	}
	b, err := yaml.Marshal(pvc)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("%s---\n%s", a, b)), nil
}
