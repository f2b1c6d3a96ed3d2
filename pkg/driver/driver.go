// Package driver serves the CSI Identity, Controller and Node services over gRPC and routes
// each request to the configured backend named by its StorageClass or volume ID.
package driver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
)

// Mode selects which CSI services the plugin serves.
type Mode string

const (
	ModeController Mode = "controller"
	ModeNode       Mode = "node"
	ModeAll        Mode = "all"
)

// ParseMode checks a --mode flag value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeController, ModeNode, ModeAll:
		return m, nil
	}
	return "", fmt.Errorf("mode %q must be controller, node or all", s)
}

// Options are everything a plugin process is configured with; ControllerOptions and
// NodeOptions take each server's share.
type Options struct {
	Name    string
	Version string
	// NodeName and NodeAddress form the node ID (name@address) on the node side.
	NodeName    string
	NodeAddress string
	// NodeLabels are the node's Kubernetes labels, matched against each backend's topology.
	NodeLabels map[string]string
	Config     *config.Config
	// Controllers and Stagers are keyed by backend name; only the side(s) served are set.
	Controllers map[string]backend.Controller
	Stagers     map[string]backend.Stager
	// Kinds are what each backend kind serves, by kind name (registry.Kinds).
	Kinds map[string]backend.Capabilities
	// Mounter does the node's bind mounts; nil uses the host's mounter.
	Mounter mount.Interface
	// MountCallTimeout bounds one syscall on a published or staged path, whose server may be
	// dead; 0 means mounter.DefaultMountCallTimeout.
	MountCallTimeout time.Duration
	// ProbeInterval is how often backend reachability is checked; 0 disables.
	ProbeInterval time.Duration
	// OnProbe, if set, is told each backend's reachability (metrics).
	OnProbe func(backendName, kind string, err error)
	// SlowCall is the duration past which a call is logged as slow; 0 means DefaultSlowCall.
	SlowCall time.Duration
	// Interceptors run around every call, after logging.
	Interceptors []grpc.UnaryServerInterceptor
	// Quota tunes the tenant usage ledger the controller checks quotas against.
	Quota tenant.LedgerOptions
}

// ControllerOptions are the controller server's share of the options.
func (o Options) ControllerOptions() ControllerOptions {
	return ControllerOptions{Config: o.Config, Controllers: o.Controllers, Kinds: o.Kinds,
		ProbeInterval: o.ProbeInterval, OnProbe: o.OnProbe, Quota: o.Quota}
}

// NodeOptions are the node server's share of the options.
func (o Options) NodeOptions() NodeOptions {
	return NodeOptions{DriverName: o.Name, NodeName: o.NodeName, NodeAddress: o.NodeAddress, NodeLabels: o.NodeLabels,
		Config: o.Config, Stagers: o.Stagers, Kinds: o.Kinds, Mounter: o.Mounter, MountCallTimeout: o.MountCallTimeout}
}

// Driver is one plugin process: the identity service and the controller server, the node
// server or both, as cmd/shiphold-csi composes them from --mode. A nil server is not served.
type Driver struct {
	*IdentityServer
	*ControllerServer
	*NodeServer

	slowCall     time.Duration
	interceptors []grpc.UnaryServerInterceptor
}

// New composes a plugin from the servers it serves; either may be nil, not both.
func New(opts Options, controller *ControllerServer, node *NodeServer) (*Driver, error) {
	if opts.Name == "" {
		return nil, fmt.Errorf("driver name is empty")
	}
	if controller == nil && node == nil {
		return nil, fmt.Errorf("driver %s serves neither the controller nor the node service", opts.Name)
	}
	if opts.Config == nil {
		return nil, fmt.Errorf("no config")
	}
	identity := &IdentityServer{name: opts.Name, version: opts.Version, controller: controller != nil, topology: opts.Config.HasTopology()}
	return &Driver{IdentityServer: identity, ControllerServer: controller, NodeServer: node, slowCall: opts.SlowCall, interceptors: opts.Interceptors}, nil
}

// Serve listens on endpoint (unix:///path or tcp://host:port) until ctx ends.
func (d *Driver) Serve(ctx context.Context, endpoint string) error {
	lis, err := Listen(endpoint)
	if err != nil {
		return err
	}
	srv := d.GRPCServer()
	if d.ControllerServer != nil {
		d.ControllerServer.start(ctx)
	}
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	klog.Infof("%s %s serving %s on %s", d.name, d.version, strings.Join(d.services(), ", "), endpoint)
	return srv.Serve(lis)
}

// services names the CSI services the plugin serves.
func (d *Driver) services() []string {
	s := []string{"identity"}
	if d.ControllerServer != nil {
		s = append(s, "controller")
	}
	if d.NodeServer != nil {
		s = append(s, "node")
	}
	return s
}

// GRPCServer builds the gRPC server with the identity service and the servers composed.
func (d *Driver) GRPCServer() *grpc.Server {
	// Panics are recovered innermost, so that logging and metrics see the INTERNAL answer.
	chain := append(append([]grpc.UnaryServerInterceptor{d.logCalls}, d.interceptors...), recoverPanics)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(chain...))
	csi.RegisterIdentityServer(srv, d.IdentityServer)
	if d.ControllerServer != nil {
		csi.RegisterControllerServer(srv, d.ControllerServer)
	}
	if d.NodeServer != nil {
		csi.RegisterNodeServer(srv, d.NodeServer)
	}
	return srv
}

// Listen opens a CSI endpoint, replacing a stale unix socket.
func Listen(endpoint string) (net.Listener, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			path = u.Host
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, err
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
		return net.Listen("unix", path)
	case "tcp":
		return net.Listen("tcp", u.Host)
	}
	return nil, fmt.Errorf("endpoint %q: scheme must be unix:// or tcp://", endpoint)
}

// Compose builds what mode serves, as cmd/shiphold-csi runs it: the controller server unless
// node, the node server unless controller, each with its share of the options; identity always.
func Compose(mode Mode, opts Options) (*Driver, error) {
	var cs *ControllerServer
	var ns *NodeServer
	var err error
	if mode != ModeNode {
		if cs, err = NewControllerServer(opts.ControllerOptions()); err != nil {
			return nil, err
		}
	}
	if mode != ModeController {
		if ns, err = NewNodeServer(opts.NodeOptions()); err != nil {
			return nil, err
		}
	}
	return New(opts, cs, ns)
}
