// Package rebind moves a PVC from its PersistentVolume to another one without losing either:
// the claim keeps its name, labels and annotations, the old volume is kept (Retain) and the
// move can be undone. Every step is recorded on the objects themselves (annotations), so a
// rerun after any failure continues where it stopped, and Rollback undoes what was done.
// shipholdctl migrate --cutover and shipholdctl import use it.
package rebind

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Annotations rebind writes.
const (
	prefix = "shiphold.csi.io/"
	// On the old PV: the claim as it was, and the reclaim policy before Retain.
	AnnOriginalClaim  = prefix + "original-claim"
	AnnOriginalPolicy = prefix + "original-reclaim-policy"
	// AnnReplacedBy (old PV) and AnnReplaces (new PV) link the two volumes of a move.
	AnnReplacedBy = prefix + "replaced-by"
	AnnReplaces   = prefix + "replaces"
	// annProvisionedBy lets the driver's provisioner delete the new PV's volume with its claim.
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
)

// NewVolume is the PersistentVolume a claim moves to.
type NewVolume struct {
	Name          string // PV name
	Driver        string
	Handle        string
	Attributes    map[string]string
	FsType        string
	CapacityBytes int64
	StorageClass  string
	// ReclaimPolicy of the new PV; Delete when empty (an adopted volume keeps its old PV's).
	ReclaimPolicy corev1.PersistentVolumeReclaimPolicy
	// Secret references for the node and controller, as the StorageClass names them.
	NodeStageSecret, NodePublishSecret, ControllerExpandSecret *corev1.SecretReference
}

// Mover carries out moves against one cluster.
type Mover struct {
	Client kubernetes.Interface
	// Log receives one line per step taken.
	Log io.Writer
	// Timeout bounds each wait (the old claim gone, the new one bound); default 2 min.
	Timeout time.Duration
}

func (m *Mover) logf(format string, args ...any) {
	if m.Log != nil {
		fmt.Fprintf(m.Log, format+"\n", args...)
	}
}

func (m *Mover) timeout() time.Duration {
	if m.Timeout > 0 {
		return m.Timeout
	}
	return 2 * time.Minute
}

// PodsUsing names the pods (not finished) that mount the claim.
func (m *Mover) PodsUsing(ctx context.Context, claim types.NamespacedName) ([]string, error) {
	pods, err := m.Client.CoreV1().Pods(claim.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", claim.Namespace, err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim.Name {
				out = append(out, p.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *Mover) refuseInUse(ctx context.Context, claim types.NamespacedName) error {
	pods, err := m.PodsUsing(ctx, claim)
	if err != nil {
		return err
	}
	if len(pods) > 0 {
		return fmt.Errorf("claim %s is mounted by pod(s) %s: stop them (scale the workload to 0) and run again", claim, strings.Join(pods, ", "))
	}
	return nil
}

// savedClaim is what a claim's re-creation needs.
type savedClaim struct {
	Name        string                           `json:"name"`
	Namespace   string                           `json:"namespace"`
	Labels      map[string]string                `json:"labels,omitempty"`
	Annotations map[string]string                `json:"annotations,omitempty"`
	Spec        corev1.PersistentVolumeClaimSpec `json:"spec"`
}

// bindingAnnotations are the binder's own and must not be carried to a new claim.
var bindingAnnotations = []string{"pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
	"volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner",
	"volume.kubernetes.io/selected-node", "kubectl.kubernetes.io/last-applied-configuration"}

func save(pvc *corev1.PersistentVolumeClaim) savedClaim {
	ann := map[string]string{}
	for k, v := range pvc.Annotations {
		ann[k] = v
	}
	for _, k := range bindingAnnotations {
		delete(ann, k)
	}
	return savedClaim{Name: pvc.Name, Namespace: pvc.Namespace, Labels: pvc.Labels, Annotations: ann, Spec: pvc.Spec}
}

// claimFor builds the claim to create: the saved one, bound to volume pv.
func (s savedClaim) claimFor(pv, class string) *corev1.PersistentVolumeClaim {
	spec := *s.Spec.DeepCopy()
	spec.VolumeName = pv
	spec.StorageClassName = &class
	spec.DataSource, spec.DataSourceRef, spec.Selector = nil, nil, nil
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Annotations: s.Annotations},
		Spec:       spec,
	}
}

func (m *Mover) getClaim(ctx context.Context, claim types.NamespacedName) (*corev1.PersistentVolumeClaim, error) {
	pvc, err := m.Client.CoreV1().PersistentVolumeClaims(claim.Namespace).Get(ctx, claim.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get claim %s: %w", claim, err)
	}
	return pvc, nil
}

func (m *Mover) getPV(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	pv, err := m.Client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get volume %s: %w", name, err)
	}
	return pv, nil
}

// waitGone waits for a deleted claim to disappear (its protection finalizer lifted).
func (m *Mover) waitGone(ctx context.Context, claim types.NamespacedName) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, m.timeout(), true, func(ctx context.Context) (bool, error) {
		pvc, err := m.getClaim(ctx, claim)
		return pvc == nil, err
	})
}

// waitBound waits until the claim is bound to pv.
func (m *Mover) waitBound(ctx context.Context, claim types.NamespacedName, pv string) error {
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, m.timeout(), true, func(ctx context.Context) (bool, error) {
		pvc, err := m.getClaim(ctx, claim)
		if err != nil || pvc == nil {
			return false, err
		}
		return pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName == pv, nil
	})
	if err != nil {
		return fmt.Errorf("claim %s did not bind to volume %s: %w", claim, pv, err)
	}
	return nil
}

func quantity(bytes int64) resource.Quantity { return *resource.NewQuantity(bytes, resource.BinarySI) }

func encode(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// ClaimSource is where a bound claim's data lives: a CSI volume, or an NFS export.
type ClaimSource struct {
	Volume        string
	Driver        string
	Handle        string
	NFSServer     string
	NFSPath       string
	CapacityBytes int64
	AccessModes   []corev1.PersistentVolumeAccessMode
}

// SourceOf reads the claim's volume.
func (m *Mover) SourceOf(ctx context.Context, claim types.NamespacedName) (*ClaimSource, error) {
	pvc, err := m.getClaim(ctx, claim)
	if err != nil {
		return nil, err
	}
	if pvc == nil || pvc.Spec.VolumeName == "" {
		return nil, fmt.Errorf("claim %s does not exist or is not bound", claim)
	}
	pv, err := m.getPV(ctx, pvc.Spec.VolumeName)
	if err != nil {
		return nil, err
	}
	cap := pv.Spec.Capacity[corev1.ResourceStorage]
	s := &ClaimSource{Volume: pv.Name, CapacityBytes: cap.Value(), AccessModes: pv.Spec.AccessModes}
	switch {
	case pv.Spec.CSI != nil:
		s.Driver, s.Handle = pv.Spec.CSI.Driver, pv.Spec.CSI.VolumeHandle
	case pv.Spec.NFS != nil:
		s.NFSServer, s.NFSPath = pv.Spec.NFS.Server, pv.Spec.NFS.Path
	default:
		return nil, fmt.Errorf("volume %s of claim %s is neither CSI nor NFS; mount it and migrate --from its path", pv.Name, claim)
	}
	return s, nil
}
