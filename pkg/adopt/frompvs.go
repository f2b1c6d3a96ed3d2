package adopt

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/rebind"
)

// Legacy is an NFS PersistentVolume on an Isilon export, and whether it can be adopted.
type Legacy struct {
	PV            string
	Claim         types.NamespacedName
	Path          string
	CapacityBytes int64
	// ReclaimPolicy is the PV's own (before a move set it to Retain); the adopted PV keeps it.
	ReclaimPolicy corev1.PersistentVolumeReclaimPolicy
	// Done names the shiphold PV the claim is on already; Refusal says why the PV is left
	// alone. Both empty: it can be adopted.
	Done, Refusal string
}

// FromPVs finds and adopts the legacy NFS PVs of one Isilon backend.
type FromPVs struct {
	Client      kubernetes.Interface
	Controllers map[string]backend.Controller
	Backend     string
	// Servers are the NFS server names or addresses the PVs reach the backend by.
	Servers []string
	// Parameters are recorded on every adopted directory (the access zone, ...).
	Parameters map[string]string
	Log        io.Writer
}

// Find lists the NFS PVs on Servers with a path below /ifs/, sorted by name.
func (f *FromPVs) Find(ctx context.Context) ([]Legacy, error) {
	pvs, err := f.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list PersistentVolumes: %w", err)
	}
	var out []Legacy
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Spec.NFS == nil || !slices.Contains(f.Servers, pv.Spec.NFS.Server) || !strings.HasPrefix(pv.Spec.NFS.Path, "/ifs/") {
			continue
		}
		l, err := f.judge(ctx, pv)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PV < out[j].PV })
	return out, nil
}

// judge says what adopting pv would do.
func (f *FromPVs) judge(ctx context.Context, pv *corev1.PersistentVolume) (Legacy, error) {
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	l := Legacy{PV: pv.Name, Path: strings.TrimSuffix(pv.Spec.NFS.Path, "/"), CapacityBytes: size.Value(), ReclaimPolicy: pv.Spec.PersistentVolumeReclaimPolicy}
	if p := pv.Annotations[rebind.AnnOriginalPolicy]; p != "" {
		l.ReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(p)
	}
	if pv.Spec.ClaimRef == nil {
		l.Refusal = "bound to no claim; import its directory alone (--isilon-path)"
		return l, nil
	}
	l.Claim = types.NamespacedName{Namespace: pv.Spec.ClaimRef.Namespace, Name: pv.Spec.ClaimRef.Name}
	if moved := pv.Annotations[rebind.AnnReplacedBy]; moved != "" {
		pvc, err := f.Client.CoreV1().PersistentVolumeClaims(l.Claim.Namespace).Get(ctx, l.Claim.Name, metav1.GetOptions{})
		if err == nil && pvc.Spec.VolumeName == moved {
			l.Done = moved
			return l, nil
		}
	}
	pods, err := (&rebind.Mover{Client: f.Client}).PodsUsing(ctx, l.Claim)
	if err != nil {
		return l, err
	}
	if len(pods) > 0 {
		l.Refusal = fmt.Sprintf("claim %s is in use by pod %s; stop it and run again", l.Claim, strings.Join(pods, ", pod "))
	}
	return l, nil
}

// Apply adopts the directory of l for the claim's namespace (its tenant) and re-binds the
// claim to a shiphold PV of it: the old PV is set to Retain and kept, the claim is created
// again with its name, bound to the new PV. A rerun after a failure continues.
func (f *FromPVs) Apply(ctx context.Context, l Legacy) (*backend.Volume, error) {
	if l.Refusal != "" {
		return nil, fmt.Errorf("PV %s: %s", l.PV, l.Refusal)
	}
	v, err := Adopt(ctx, f.Controllers, Request{Backend: f.Backend, AdoptRequest: backend.AdoptRequest{
		Object: l.Path, Tenant: l.Claim.Namespace, Name: l.PV, SizeBytes: l.CapacityBytes, Parameters: f.Parameters,
	}})
	if err != nil {
		return nil, fmt.Errorf("PV %s: adopt %s: %w", l.PV, l.Path, err)
	}
	nv := rebind.NewVolume{Name: PVName(v), Driver: Driver, Handle: v.ID.String(), Attributes: v.Context,
		CapacityBytes: v.CapacityBytes, ReclaimPolicy: l.ReclaimPolicy}
	if err := rebind.ClassFor(ctx, f.Client, Driver, f.Backend, l.Claim, &nv); err != nil {
		return nil, fmt.Errorf("PV %s: %w", l.PV, err)
	}
	if err := f.refuseCollision(ctx, nv); err != nil {
		return nil, fmt.Errorf("PV %s: %w", l.PV, err)
	}
	mv := &rebind.Mover{Client: f.Client, Log: f.Log}
	if err := mv.Move(ctx, l.Claim, nv); err != nil {
		return nil, fmt.Errorf("PV %s: re-bind claim %s: %w (run again to continue, or shipholdctl migrate rollback --pvc %s)", l.PV, l.Claim, err, l.Claim)
	}
	return v, nil
}

// refuseCollision refuses a PV of the new one's name that holds another volume: the move
// would take it for its own.
func (f *FromPVs) refuseCollision(ctx context.Context, nv rebind.NewVolume) error {
	pv, err := f.Client.CoreV1().PersistentVolumes().Get(ctx, nv.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("get PersistentVolume %s: %w", nv.Name, err)
	case pv.Spec.CSI == nil || pv.Spec.CSI.VolumeHandle != nv.Handle:
		return fmt.Errorf("PersistentVolume %s exists and is not volume %s: rename or delete it first", nv.Name, nv.Handle)
	}
	return nil
}
