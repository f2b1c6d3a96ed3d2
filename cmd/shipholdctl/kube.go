package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/shiphold/shiphold/pkg/rebind"
	"github.com/shiphold/shiphold/pkg/volid"
)

// driverName is the CSI driver name shiphold registers.
const driverName = "shiphold.csi.io"

type pvcRef = types.NamespacedName

func parsePVCRef(s string) (*pvcRef, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("--pvc %q: want NAMESPACE/NAME", s)
	}
	return &pvcRef{Namespace: ns, Name: name}, nil
}

type kubeClient struct {
	client kubernetes.Interface
}

// newKubeClient is how the commands reach the cluster; tests replace it.
var newKubeClient = func(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return kubernetes.NewForConfig(cfg)
}

func (m *migration) kubeMover() (*rebind.Mover, error) {
	if m.kube == nil {
		c, err := newKubeClient(m.f.kubeconfig)
		if err != nil {
			return nil, err
		}
		m.kube = &kubeClient{client: c}
	}
	return &rebind.Mover{Client: m.kube.client, Log: m.stderr}, nil
}

// resolvePVC turns a --pvc source into the volume or NFS export behind it.
func (m *migration) resolvePVC(ctx context.Context) error {
	mv, err := m.kubeMover()
	if err != nil {
		return err
	}
	cs, err := mv.SourceOf(ctx, *m.src.pvc)
	if err != nil {
		return err
	}
	if m.f.size == "" {
		m.f.size = fmt.Sprint(cs.CapacityBytes)
	}
	for _, am := range cs.AccessModes {
		m.f.multiNode = m.f.multiNode || am == corev1.ReadWriteMany || am == corev1.ReadOnlyMany
	}
	switch {
	case cs.Driver == driverName:
		id, err := volid.ParseVolume(cs.Handle)
		if err != nil {
			return fmt.Errorf("volume %s: handle %q: %w", cs.Volume, cs.Handle, err)
		}
		m.src.volume = &id
	case cs.NFSServer != "":
		m.src.from = "nfs://" + cs.NFSServer + cs.NFSPath
		if m.f.nfsPort > 0 || m.f.mountPort > 0 {
			m.src.from += fmt.Sprintf("?nfsport=%d&mountport=%d", m.f.nfsPort, m.f.mountPort)
		}
	default:
		return fmt.Errorf("claim %s is on volume %s of CSI driver %q: mount it and migrate --from its path", m.src.pvc, cs.Volume, cs.Driver)
	}
	return nil
}

// cutover re-binds the PVC to the target volume, through the target backend's StorageClass.
func (m *migration) cutover(ctx context.Context) error {
	mv, err := m.kubeMover()
	if err != nil {
		return err
	}
	v := m.target
	nv := rebind.NewVolume{Name: "shiphold-" + v.ID.Hash, Driver: driverName, Handle: v.ID.String(), Attributes: v.Context,
		FsType: v.Context["fsType"], CapacityBytes: v.CapacityBytes}
	if err := rebind.ClassFor(ctx, m.kube.client, driverName, m.f.to, *m.src.pvc, &nv); err != nil {
		return err
	}
	if err := mv.Move(ctx, *m.src.pvc, nv); err != nil {
		return fmt.Errorf("cutover of %s: %w (run again to continue, or migrate rollback --pvc %s)", m.src.pvc, err, m.src.pvc)
	}
	fmt.Fprintf(m.stdout, "cutover: claim %s is on volume %s (%s); the old volume is retained\n", m.src.pvc, nv.Name, nv.Handle)
	return nil
}

func rollbackCommand(stdout, stderr io.Writer) *cobra.Command {
	var pvc, kubeconfig string
	cmd := &cobra.Command{
		Use:   "rollback --pvc NS/NAME --kubeconfig FILE",
		Short: "bind a migrated PVC to its old volume again (the migrated copy is kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ref, err := parsePVCRef(pvc)
			if err != nil {
				return usageError{err}
			}
			if kubeconfig == "" {
				return usageError{errors.New("rollback needs --kubeconfig")}
			}
			c, err := newKubeClient(kubeconfig)
			if err != nil {
				return err
			}
			mv := &rebind.Mover{Client: c, Log: stderr}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if err := mv.Rollback(ctx, *ref); err != nil {
				return fmt.Errorf("rollback of %s: %w (run again to continue)", ref, err)
			}
			fmt.Fprintf(stdout, "rollback: claim %s is on its old volume again\n", ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&pvc, "pvc", "", "the migrated PVC NS/NAME")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster")
	return cmd
}
