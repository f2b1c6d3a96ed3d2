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
	"sort"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/mounter"
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

// Options configure a Driver.
type Options struct {
	Name    string
	Version string
	Mode    Mode
	// NodeName and NodeAddress form the node ID (name@address) on the node side.
	NodeName    string
	NodeAddress string
	// NodeLabels are the node's Kubernetes labels, matched against each backend's topology.
	NodeLabels map[string]string
	Config     *config.Config
	// Controllers and Stagers are keyed by backend name; only the side(s) Mode needs are set.
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

// Driver implements the CSI services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	opts     Options
	kinds    kinds
	mounter  mount.Interface
	inflight *inflight
	ledger   *tenant.Ledger
	capacity capacityCache

	mu        sync.Mutex
	reachable map[string]error
}

// New checks the options and returns a driver ready to Serve.
func New(opts Options) (*Driver, error) {
	if opts.Name == "" {
		return nil, fmt.Errorf("driver name is empty")
	}
	if opts.Config == nil {
		return nil, fmt.Errorf("no config")
	}
	if opts.Mode != ModeController && opts.NodeName == "" {
		return nil, fmt.Errorf("node mode needs a node name (--nodeid)")
	}
	for _, b := range opts.Config.Backends {
		if _, ok := opts.Kinds[b.Kind]; !ok {
			return nil, fmt.Errorf("backend %q: the driver serves no kind %q", b.Name, b.Kind)
		}
		if opts.Mode != ModeNode && opts.Controllers[b.Name] == nil {
			return nil, fmt.Errorf("backend %q has no controller", b.Name)
		}
		if opts.Mode != ModeController && opts.Stagers[b.Name] == nil {
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
	ledger := tenant.NewLedger(opts.Controllers, opts.Config.Tenants, opts.Quota)
	return &Driver{opts: opts, kinds: opts.Kinds, mounter: m, inflight: newInflight(), ledger: ledger, reachable: map[string]error{}}, nil
}

// NodeID is what NodeGetInfo reports: name@address, so that a controller can grant the
// node's address access (Isilon exports) without asking Kubernetes.
func (d *Driver) NodeID() string {
	return d.opts.NodeName + "@" + d.opts.NodeAddress
}

// Serve listens on endpoint (unix:///path or tcp://host:port) until ctx ends.
func (d *Driver) Serve(ctx context.Context, endpoint string) error {
	lis, err := Listen(endpoint)
	if err != nil {
		return err
	}
	srv := d.GRPCServer()
	d.startProbing(ctx)
	d.startCollecting(ctx)
	d.startLedger(ctx)
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	klog.Infof("%s %s serving %s mode on %s", d.opts.Name, d.opts.Version, d.opts.Mode, endpoint)
	return srv.Serve(lis)
}

// GRPCServer builds the gRPC server with the CSI services for the driver's mode.
func (d *Driver) GRPCServer() *grpc.Server {
	// Panics are recovered innermost, so that logging and metrics see the INTERNAL answer.
	chain := append(append([]grpc.UnaryServerInterceptor{d.logCalls}, d.opts.Interceptors...), recoverPanics)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(chain...))
	csi.RegisterIdentityServer(srv, d)
	if d.opts.Mode != ModeNode {
		csi.RegisterControllerServer(srv, d)
	}
	if d.opts.Mode != ModeController {
		csi.RegisterNodeServer(srv, d)
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

func (d *Driver) controller(name string) (backend.Controller, error) {
	c, ok := d.opts.Controllers[name]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "backend %q is not in the driver config; configured backends: %v", name, d.backendNames())
	}
	return c, nil
}

func (d *Driver) backendNames() []string {
	names := make([]string, 0, len(d.opts.Config.Backends))
	for _, b := range d.opts.Config.Backends {
		names = append(names, b.Name)
	}
	sort.Strings(names)
	return names
}

// Reachability reports the last probe result per backend (nil error = reachable).
func (d *Driver) Reachability() map[string]error {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]error, len(d.reachable))
	for k, v := range d.reachable {
		out[k] = v
	}
	return out
}

func (d *Driver) startProbing(ctx context.Context) {
	if d.opts.ProbeInterval <= 0 || d.opts.Mode == ModeNode {
		return
	}
	go func() {
		t := time.NewTicker(d.opts.ProbeInterval)
		defer t.Stop()
		for {
			d.probeBackends(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (d *Driver) probeBackends(ctx context.Context) {
	for name, c := range d.opts.Controllers {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Probe(pctx)
		cancel()
		d.mu.Lock()
		prev, seen := d.reachable[name]
		d.reachable[name] = err
		d.mu.Unlock()
		if err != nil && (!seen || prev == nil) {
			klog.Warningf("backend %s (%s) unreachable: %v", name, c.Kind(), err)
		} else if err == nil && seen && prev != nil {
			klog.Infof("backend %s (%s) reachable again", name, c.Kind())
		}
		if d.opts.OnProbe != nil {
			d.opts.OnProbe(name, c.Kind(), err)
		}
	}
}
