package gc

import (
	"context"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
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
	// LegacyPaths and LegacyNames are what PVs of other drivers mount (an NFS export's or a
	// CephFS path; an RBD image's or a ceph-csi subvolume's name): an adopted volume may
	// still be one of them until its PV is re-bound.
	LegacyPaths map[string]string
	LegacyNames map[string]string
}

// ReadCluster lists PVs, VolumeAttachments and Nodes.
func ReadCluster(ctx context.Context, client kubernetes.Interface) (*Cluster, error) {
	cl := &Cluster{Handles: map[string]string{}, PVHashes: map[string]string{}, NodeAddrs: map[string]bool{},
		LegacyPaths: map[string]string{}, LegacyNames: map[string]string{}}
	pvs, err := client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list persistent volumes: %w", err)
	}
	for _, pv := range pvs.Items {
		cl.PVHashes[volid.Hash(pv.Name)] = "PersistentVolume " + pv.Name
		if pv.Spec.CSI != nil {
			cl.Handles[pv.Spec.CSI.VolumeHandle] = "PersistentVolume " + pv.Name
		}
		cl.addLegacy(&pv)
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
// handle, or a PV / VolumeAttachment of the name it was created for (whose PV may be gone);
// for an adopted volume also a PV of another driver that mounts its object.
func (cl *Cluster) References(v *backend.Volume) string {
	if by, ok := cl.Handles[v.ID.String()]; ok {
		return by
	}
	if v.ID.Object == "" {
		return cl.PVHashes[v.ID.Hash]
	}
	if by := cl.PVHashes[volid.Hash(v.RequestName)]; v.RequestName != "" && by != "" {
		return by
	}
	return cl.legacyUse(v.ID.Object)
}

// addLegacy notes what a PV of another driver mounts.
func (cl *Cluster) addLegacy(pv *corev1.PersistentVolume) {
	by := "PersistentVolume " + pv.Name
	src := pv.Spec.PersistentVolumeSource
	switch {
	case src.NFS != nil:
		cl.LegacyPaths[path.Clean(src.NFS.Path)] = by
	case src.CephFS != nil:
		cl.LegacyPaths[path.Clean("/"+src.CephFS.Path)] = by
	case src.RBD != nil:
		cl.LegacyNames[src.RBD.RBDImage] = by
	case src.CSI != nil:
		// ceph-csi's volume attributes name its image or subvolume.
		for _, k := range []string{"imageName", "subvolumeName"} {
			if n := src.CSI.VolumeAttributes[k]; n != "" {
				cl.LegacyNames[n] = by
			}
		}
		if p := src.CSI.VolumeAttributes["subvolumePath"]; p != "" {
			cl.LegacyPaths[path.Clean(p)] = by
		}
	}
}

// legacyUse says which legacy PV mounts an adopted object: an Isilon directory, or a
// CephFS subvolume's base directory, that overlaps a mounted path (one holds the other),
// or an image or subvolume of the same name. It errs on the side of keeping.
func (cl *Cluster) legacyUse(object string) string {
	if by := cl.LegacyNames[path.Base(object)]; by != "" {
		return by
	}
	for _, dir := range []string{object, "/volumes/" + object} {
		for p, by := range cl.LegacyPaths {
			if overlaps(dir, p) {
				return by
			}
		}
	}
	return ""
}

func overlaps(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/") || b == "/"
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
