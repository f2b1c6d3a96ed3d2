package gc

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Cluster is what the Kubernetes API says uses the storage: the volume handles of every PV
// (in any phase), the PV names VolumeAttachments name, and every address of every Node.
type Cluster struct {
	// Handles maps a CSI volume handle to the PV that names it.
	Handles map[string]string
	// PVHashes are the hashes of the PV names that exist or that a VolumeAttachment names:
	// the CO asks for a volume under its PV's name, and the volume ID carries its hash.
	PVHashes  map[string]string
	NodeAddrs map[string]bool
}

// ReadCluster lists PVs, VolumeAttachments and Nodes.
func ReadCluster(ctx context.Context, client kubernetes.Interface) (*Cluster, error) {
	cl := &Cluster{Handles: map[string]string{}, PVHashes: map[string]string{}, NodeAddrs: map[string]bool{}}
	pvs, err := client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list persistent volumes: %w", err)
	}
	for _, pv := range pvs.Items {
		cl.PVHashes[volid.Hash(pv.Name)] = "PersistentVolume " + pv.Name
		if pv.Spec.CSI != nil {
			cl.Handles[pv.Spec.CSI.VolumeHandle] = "PersistentVolume " + pv.Name
		}
	}
	vas, err := client.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list volume attachments: %w", err)
	}
	for _, va := range vas.Items {
		src := va.Spec.Source
		if src.PersistentVolumeName != nil {
			cl.PVHashes[volid.Hash(*src.PersistentVolumeName)] = "VolumeAttachment " + va.Name
		}
		if src.InlineVolumeSpec != nil && src.InlineVolumeSpec.CSI != nil {
			cl.Handles[src.InlineVolumeSpec.CSI.VolumeHandle] = "VolumeAttachment " + va.Name
		}
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes.Items {
		// Every address type counts: a client that is any node's address is kept.
		for _, a := range n.Status.Addresses {
			cl.NodeAddrs[a.Address] = true
		}
	}
	return cl, nil
}

// References says what references v ("" for nothing): a PV or inline attachment with its
// handle, or a PV / VolumeAttachment of the name it was created for (whose PV may be gone).
func (cl *Cluster) References(v *backend.Volume) string {
	if by, ok := cl.Handles[v.ID.String()]; ok {
		return by
	}
	return cl.PVHashes[v.ID.Hash]
}

// unknownAddrs are the clients no Node has.
func (cl *Cluster) unknownAddrs(clients []string) []string {
	var out []string
	for _, c := range clients {
		if !cl.NodeAddrs[c] {
			out = append(out, c)
		}
	}
	return out
}
