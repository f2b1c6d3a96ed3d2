package k8s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// The node side of the end-to-end test: with no kubelet in the control plane, the test does
// what the kubelet would for a pod on node-1. It stages and publishes a PV through the
// driver's node service on the plugin socket, with the attachment's publish context, the PV's
// volume attributes, fsType and mount options and the node-stage secret the PV names, at the
// kubelet's paths below the driver's --kubelet-dir.

// e2eDataFile is the file written into a volume before its snapshot and read back from the
// volume restored from that snapshot.
const e2eDataFile = "e2e-data.txt"

type nodePlugin struct {
	node    csi.NodeClient
	kubelet string // the driver's --kubelet-dir
	k       *kube
}

// pvForNode is what the kubelet reads from a PV to stage and publish it.
type pvForNode struct {
	Spec struct {
		AccessModes  []string `json:"accessModes"`
		MountOptions []string `json:"mountOptions"`
		VolumeMode   string   `json:"volumeMode"`
		CSI          struct {
			VolumeHandle       string            `json:"volumeHandle"`
			FSType             string            `json:"fsType"`
			VolumeAttributes   map[string]string `json:"volumeAttributes"`
			NodeStageSecretRef *struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"nodeStageSecretRef"`
		} `json:"csi"`
	} `json:"spec"`
}

// withVolume stages and publishes pv (attached as VolumeAttachment va), runs use on the
// published directory, then unpublishes and unstages it, also when use fails.
func (n *nodePlugin) withVolume(ctx context.Context, pv, va string, use func(dir string) error) error {
	var p pvForNode
	if err := n.k.getJSON(ctx, &p, "get", "pv", pv); err != nil {
		return err
	}
	var att struct {
		Status struct {
			AttachmentMetadata map[string]string `json:"attachmentMetadata"`
		} `json:"status"`
	}
	if err := n.k.getJSON(ctx, &att, "get", "volumeattachment", va); err != nil {
		return err
	}
	var secrets map[string]string
	if ref := p.Spec.CSI.NodeStageSecretRef; ref != nil {
		var err error
		if secrets, err = n.secret(ctx, ref.Namespace, ref.Name); err != nil {
			return fmt.Errorf("node-stage secret of PV %s: %w", pv, err)
		}
	}
	vcap, err := kubeletCapability(&p)
	if err != nil {
		return fmt.Errorf("PV %s: %w", pv, err)
	}
	id := p.Spec.CSI.VolumeHandle
	sum := sha256.Sum256([]byte(id))
	staging := filepath.Join(n.kubelet, "plugins", "kubernetes.io", "csi", e2eDriverName, hex.EncodeToString(sum[:]), "globalmount")
	target := filepath.Join(n.kubelet, "pods", "e2e-"+pv, "volumes", "kubernetes.io~csi", pv, "mount")
	for _, d := range []string{staging, filepath.Dir(target)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := n.node.NodeStageVolume(cctx, &csi.NodeStageVolumeRequest{
		VolumeId: id, StagingTargetPath: staging, VolumeCapability: vcap,
		PublishContext: att.Status.AttachmentMetadata, VolumeContext: p.Spec.CSI.VolumeAttributes, Secrets: secrets,
	}); err != nil {
		return fmt.Errorf("NodeStageVolume %s: %w", pv, err)
	}
	unstage := func() error {
		uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ucancel()
		if _, err := n.node.NodeUnstageVolume(uctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			return fmt.Errorf("NodeUnstageVolume %s: %w", pv, err)
		}
		return nil
	}
	if _, err := n.node.NodePublishVolume(cctx, &csi.NodePublishVolumeRequest{
		VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vcap,
		PublishContext: att.Status.AttachmentMetadata, VolumeContext: p.Spec.CSI.VolumeAttributes,
	}); err != nil {
		return errors.Join(fmt.Errorf("NodePublishVolume %s: %w", pv, err), unstage())
	}
	useErr := use(target)
	uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ucancel()
	var unpubErr error
	if _, err := n.node.NodeUnpublishVolume(uctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		unpubErr = fmt.Errorf("NodeUnpublishVolume %s: %w", pv, err)
	}
	return errors.Join(useErr, unpubErr, unstage())
}

// kubeletCapability is the volume capability the kubelet sends for a filesystem PV.
func kubeletCapability(p *pvForNode) (*csi.VolumeCapability, error) {
	if p.Spec.VolumeMode == "Block" {
		return nil, fmt.Errorf("volumeMode Block: the test writes files")
	}
	mode := csi.VolumeCapability_AccessMode_UNKNOWN
	if len(p.Spec.AccessModes) == 1 {
		switch p.Spec.AccessModes[0] {
		case "ReadWriteOnce":
			mode = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
		case "ReadWriteMany":
			mode = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
		}
	}
	if mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return nil, fmt.Errorf("access modes %v: the test knows ReadWriteOnce and ReadWriteMany", p.Spec.AccessModes)
	}
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{
			FsType: p.Spec.CSI.FSType, MountFlags: p.Spec.MountOptions}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}, nil
}

// secret reads a Secret's data as the kubelet passes it to the plugin.
func (n *nodePlugin) secret(ctx context.Context, ns, name string) (map[string]string, error) {
	var s struct {
		Data map[string][]byte `json:"data"` // base64 in JSON, decoded by encoding/json
	}
	if err := n.k.getJSON(ctx, &s, "get", "secret", "-n", ns, name); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(s.Data))
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out, nil
}

// writeData writes content into dir/e2eDataFile, synced, and reads it back.
func writeData(dir, content string) error {
	p := filepath.Join(dir, e2eDataFile)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return checkData(dir, content)
}

// checkData reads dir/e2eDataFile and compares it with want.
func checkData(dir, want string) error {
	got, err := os.ReadFile(filepath.Join(dir, e2eDataFile))
	if err != nil {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return fmt.Errorf("read %s (the volume holds %v): %w", e2eDataFile, names, err)
	}
	if string(got) != want {
		return fmt.Errorf("%s holds %q, want %q", e2eDataFile, got, want)
	}
	return nil
}
