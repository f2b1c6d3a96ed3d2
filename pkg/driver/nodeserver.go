package driver

import (
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/mounter"
)

// NodeOptions configure a NodeServer.
type NodeOptions struct {
	// DriverName finds, among kubelet's staged volumes, those this driver staged.
	DriverName string
	// NodeName and NodeAddress form the node ID (name@address).
	NodeName    string
	NodeAddress string
	// NodeLabels are the node's Kubernetes labels, matched against each backend's topology.
	NodeLabels map[string]string
	Config     *config.Config
	// Stagers are the backends' node sides, by backend name.
	Stagers map[string]backend.Stager
	// Kinds are what each backend kind serves, by kind name (registry.Kinds).
	Kinds map[string]backend.Capabilities
	// Mounter does the node's bind mounts; nil uses the host's mounter.
	Mounter mount.Interface
	// MountCallTimeout bounds one syscall on a published or staged path, whose server may be
	// dead; 0 means mounter.DefaultMountCallTimeout.
	MountCallTimeout time.Duration
}

// NodeServer serves the CSI Node service: staging and publishing on this node.
type NodeServer struct {
	csi.UnimplementedNodeServer

	opts     NodeOptions
	kinds    kinds
	mounter  mount.Interface
	inflight *inflight
}

// NewNodeServer checks that the node has a name and every configured backend a node side
// of a kind the driver serves.
func NewNodeServer(opts NodeOptions) (*NodeServer, error) {
	if opts.Config == nil {
		return nil, fmt.Errorf("no config")
	}
	if opts.NodeName == "" {
		return nil, fmt.Errorf("node mode needs a node name (--nodeid)")
	}
	for _, b := range opts.Config.Backends {
		if _, ok := opts.Kinds[b.Kind]; !ok {
			return nil, fmt.Errorf("backend %q: the driver serves no kind %q", b.Name, b.Kind)
		}
		if opts.Stagers[b.Name] == nil {
			return nil, fmt.Errorf("backend %q has no node stager", b.Name)
		}
	}
	m := opts.Mounter
	if m == nil {
		m = mount.New("")
	}
	if opts.MountCallTimeout <= 0 {
		opts.MountCallTimeout = mounter.DefaultMountCallTimeout
	}
	return &NodeServer{opts: opts, kinds: opts.Kinds, mounter: m, inflight: newInflight()}, nil
}

// NodeID is what NodeGetInfo reports: name@address, so that a controller can grant the
// node's address access (Isilon exports) without asking Kubernetes.
func (d *NodeServer) NodeID() string {
	return d.opts.NodeName + "@" + d.opts.NodeAddress
}
