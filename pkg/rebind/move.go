package rebind

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Move re-binds claim to the new volume: the old volume is set to Retain (its claim and
// reclaim policy recorded on it), the new volume is created pre-bound to the claim's name,
// the claim is deleted and created again with its name, labels and annotations, bound to the
// new volume. A claim in use by any pod is refused. Run again after a failure, it continues.
func (m *Mover) Move(ctx context.Context, claim types.NamespacedName, nv NewVolume) error {
	pvc, err := m.getClaim(ctx, claim)
	if err != nil {
		return err
	}
	if pvc != nil && pvc.Spec.VolumeName == nv.Name {
		m.logf("claim %s is on volume %s already", claim, nv.Name)
		return m.waitBound(ctx, claim, nv.Name)
	}
	old, err := m.oldVolume(ctx, claim, pvc, nv.Name)
	if err != nil {
		return err
	}
	if err := m.refuseInUse(ctx, claim); err != nil {
		return err
	}
	if err := m.retain(ctx, old, pvc, nv.Name); err != nil {
		return err
	}
	if err := m.createVolume(ctx, claim, old, nv); err != nil {
		return err
	}
	if pvc != nil {
		if err := m.deleteClaim(ctx, claim); err != nil {
			return err
		}
	}
	saved, err := savedOn(old)
	if err != nil {
		return err
	}
	return m.createClaim(ctx, claim, saved.claimFor(nv.Name, nv.StorageClass), nv.Name)
}

// oldVolume finds the volume the claim is moving from: the one it is bound to, or, when an
// earlier run deleted the claim already, the one that records being replaced by newPV.
func (m *Mover) oldVolume(ctx context.Context, claim types.NamespacedName, pvc *corev1.PersistentVolumeClaim, newPV string) (*corev1.PersistentVolume, error) {
	if pvc != nil {
		if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
			return nil, fmt.Errorf("claim %s is %s, not bound: nothing to move", claim, pvc.Status.Phase)
		}
		return m.getPV(ctx, pvc.Spec.VolumeName)
	}
	pvs, err := m.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	for i := range pvs.Items {
		if pvs.Items[i].Annotations[AnnReplacedBy] == newPV {
			return &pvs.Items[i], nil
		}
	}
	return nil, fmt.Errorf("claim %s does not exist and no volume records a move to %s", claim, newPV)
}

// retain records the claim and the reclaim policy on the old volume, then sets Retain.
func (m *Mover) retain(ctx context.Context, old *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim, newPV string) error {
	if old.Annotations[AnnReplacedBy] == newPV && old.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain {
		return nil
	}
	if old.Annotations == nil {
		old.Annotations = map[string]string{}
	}
	if _, ok := old.Annotations[AnnOriginalClaim]; !ok {
		if pvc == nil {
			return fmt.Errorf("volume %s records no claim to re-create", old.Name)
		}
		old.Annotations[AnnOriginalClaim] = encode(save(pvc))
		old.Annotations[AnnOriginalPolicy] = string(old.Spec.PersistentVolumeReclaimPolicy)
	}
	old.Annotations[AnnReplacedBy] = newPV
	old.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	if _, err := m.Client.CoreV1().PersistentVolumes().Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set volume %s to Retain: %w", old.Name, err)
	}
	m.logf("volume %s: reclaim policy Retain (was %s); the claim is recorded on it", old.Name, old.Annotations[AnnOriginalPolicy])
	return nil
}

func savedOn(pv *corev1.PersistentVolume) (savedClaim, error) {
	var s savedClaim
	if err := json.Unmarshal([]byte(pv.Annotations[AnnOriginalClaim]), &s); err != nil || s.Name == "" {
		return s, fmt.Errorf("volume %s: annotation %s does not hold a claim", pv.Name, AnnOriginalClaim)
	}
	return s, nil
}

// createVolume creates the new PV, pre-bound to the claim's name, like the old one in
// access modes and volume mode.
func (m *Mover) createVolume(ctx context.Context, claim types.NamespacedName, old *corev1.PersistentVolume, nv NewVolume) error {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: nv.Name, Annotations: map[string]string{AnnReplaces: old.Name, annProvisionedBy: nv.Driver}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: quantity(nv.CapacityBytes)},
			AccessModes:                   old.Spec.AccessModes,
			VolumeMode:                    old.Spec.VolumeMode,
			PersistentVolumeReclaimPolicy: reclaimPolicy(nv),
			StorageClassName:              nv.StorageClass,
			MountOptions:                  nil,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: claim.Namespace, Name: claim.Name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: nv.Driver, VolumeHandle: nv.Handle, VolumeAttributes: nv.Attributes, FSType: nv.FsType,
				NodeStageSecretRef: nv.NodeStageSecret, NodePublishSecretRef: nv.NodePublishSecret,
				ControllerExpandSecretRef: nv.ControllerExpandSecret,
			}},
		},
	}
	_, err := m.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create volume %s: %w", nv.Name, err)
	}
	m.logf("volume %s: created for %s (handle %s, class %q)", nv.Name, claim, nv.Handle, nv.StorageClass)
	return nil
}

func (m *Mover) deleteClaim(ctx context.Context, claim types.NamespacedName) error {
	err := m.Client.CoreV1().PersistentVolumeClaims(claim.Namespace).Delete(ctx, claim.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete claim %s: %w", claim, err)
	}
	if err := m.waitGone(ctx, claim); err != nil {
		return fmt.Errorf("claim %s is not gone (a pod may have started using it): %w", claim, err)
	}
	m.logf("claim %s: deleted (its volume is retained)", claim)
	return nil
}

func (m *Mover) createClaim(ctx context.Context, claim types.NamespacedName, pvc *corev1.PersistentVolumeClaim, pv string) error {
	_, err := m.Client.CoreV1().PersistentVolumeClaims(claim.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create claim %s: %w", claim, err)
	}
	if err := m.waitBound(ctx, claim, pv); err != nil {
		return err
	}
	m.logf("claim %s: created again, bound to volume %s", claim, pv)
	return nil
}

// Rollback binds the claim to the volume it had before a Move: the moved-to volume is kept
// (Retain) for the admin to delete, the old volume gets its reclaim policy back.
func (m *Mover) Rollback(ctx context.Context, claim types.NamespacedName) error {
	old, cur, err := m.movedPair(ctx, claim)
	if err != nil {
		return err
	}
	saved, err := savedOn(old)
	if err != nil {
		return err
	}
	if err := m.refuseInUse(ctx, claim); err != nil {
		return err
	}
	if cur != nil {
		if err := m.keepMoved(ctx, cur); err != nil {
			return err
		}
	}
	pvc, err := m.getClaim(ctx, claim)
	if err != nil {
		return err
	}
	if pvc != nil && pvc.Spec.VolumeName != old.Name {
		if err := m.deleteClaim(ctx, claim); err != nil {
			return err
		}
	}
	if err := m.release(ctx, old, claim); err != nil {
		return err
	}
	class := ""
	if saved.Spec.StorageClassName != nil {
		class = *saved.Spec.StorageClassName
	}
	if err := m.createClaim(ctx, claim, saved.claimFor(old.Name, class), old.Name); err != nil {
		return err
	}
	return m.restore(ctx, old.Name)
}

// movedPair finds the volume a claim was moved from, and the one it was moved to (nil when
// already gone).
func (m *Mover) movedPair(ctx context.Context, claim types.NamespacedName) (old, cur *corev1.PersistentVolume, err error) {
	pvs, err := m.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list volumes: %w", err)
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if s, err := savedOn(pv); err == nil && s.Name == claim.Name && s.Namespace == claim.Namespace && pv.Annotations[AnnReplacedBy] != "" {
			old = pv
		}
	}
	if old == nil {
		return nil, nil, fmt.Errorf("no volume records a move of claim %s: nothing to roll back", claim)
	}
	for i := range pvs.Items {
		if pvs.Items[i].Name == old.Annotations[AnnReplacedBy] {
			cur = &pvs.Items[i]
		}
	}
	return old, cur, nil
}

// keepMoved sets the moved-to volume to Retain, so deleting its claim keeps the copy.
func (m *Mover) keepMoved(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain {
		return nil
	}
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	if _, err := m.Client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set volume %s to Retain: %w", pv.Name, err)
	}
	m.logf("volume %s: reclaim policy Retain (the migrated copy is kept; delete it when done)", pv.Name)
	return nil
}

// release makes the old volume available to the re-created claim.
func (m *Mover) release(ctx context.Context, old *corev1.PersistentVolume, claim types.NamespacedName) error {
	old, err := m.getPV(ctx, old.Name)
	if err != nil {
		return err
	}
	ref := old.Spec.ClaimRef
	if ref != nil && ref.UID == "" && ref.Name == claim.Name {
		return nil
	}
	old.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: claim.Namespace, Name: claim.Name}
	if _, err := m.Client.CoreV1().PersistentVolumes().Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("release volume %s for %s: %w", old.Name, claim, err)
	}
	m.logf("volume %s: released for claim %s", old.Name, claim)
	return nil
}

// restore gives the old volume its reclaim policy back and drops the move's annotations.
func (m *Mover) restore(ctx context.Context, name string) error {
	pv, err := m.getPV(ctx, name)
	if err != nil {
		return err
	}
	if p := pv.Annotations[AnnOriginalPolicy]; p != "" {
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(p)
	}
	for _, k := range []string{AnnOriginalClaim, AnnOriginalPolicy, AnnReplacedBy} {
		delete(pv.Annotations, k)
	}
	if _, err := m.Client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("restore volume %s: %w", name, err)
	}
	m.logf("volume %s: reclaim policy %s again; claim back on it", name, pv.Spec.PersistentVolumeReclaimPolicy)
	return nil
}

func reclaimPolicy(nv NewVolume) corev1.PersistentVolumeReclaimPolicy {
	if nv.ReclaimPolicy == "" {
		return corev1.PersistentVolumeReclaimDelete
	}
	return nv.ReclaimPolicy
}
