package driver

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
)

// ControllerOptions configure a ControllerServer.
type ControllerOptions struct {
	Config *config.Config
	// Controllers are the backends' provisioning sides, by backend name.
	Controllers map[string]backend.Controller
	// Kinds are what each backend kind serves, by kind name (registry.Kinds).
	Kinds map[string]backend.Capabilities
	// ProbeInterval is how often backend reachability is checked; 0 disables.
	ProbeInterval time.Duration
	// OnProbe, if set, is told each backend's reachability (metrics).
	OnProbe func(backendName, kind string, err error)
	// Quota tunes the tenant usage ledger the controller checks quotas against.
	Quota tenant.LedgerOptions
}

// ControllerServer serves the CSI Controller service: provisioning on the backends.
type ControllerServer struct {
	csi.UnimplementedControllerServer

	opts     ControllerOptions
	kinds    kinds
	inflight *inflight
	ledger   *tenant.Ledger
	capacity capacityCache

	mu        sync.Mutex
	reachable map[string]error
}

// NewControllerServer checks that every configured backend has a controller of a kind the
// driver serves.
func NewControllerServer(opts ControllerOptions) (*ControllerServer, error) {
	if opts.Config == nil {
		return nil, fmt.Errorf("no config")
	}
	for _, b := range opts.Config.Backends {
		if _, ok := opts.Kinds[b.Kind]; !ok {
			return nil, fmt.Errorf("backend %q: the driver serves no kind %q", b.Name, b.Kind)
		}
		if opts.Controllers[b.Name] == nil {
			return nil, fmt.Errorf("backend %q has no controller", b.Name)
		}
	}
	ledger := tenant.NewLedger(opts.Controllers, opts.Config.Tenants, opts.Quota)
	return &ControllerServer{opts: opts, kinds: opts.Kinds, inflight: newInflight(), ledger: ledger, reachable: map[string]error{}}, nil
}

// start sets the controller's background work going: backend probes, leftover collection,
// and the tenant usage the quota checks read (waited for, briefly).
func (d *ControllerServer) start(ctx context.Context) {
	d.startProbing(ctx)
	d.startCollecting(ctx)
	d.startLedger(ctx)
}

func (d *ControllerServer) controller(name string) (backend.Controller, error) {
	c, ok := d.opts.Controllers[name]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "backend %q is not in the driver config; configured backends: %v", name, d.backendNames())
	}
	return c, nil
}

func (d *ControllerServer) backendNames() []string {
	names := make([]string, 0, len(d.opts.Config.Backends))
	for _, b := range d.opts.Config.Backends {
		names = append(names, b.Name)
	}
	sort.Strings(names)
	return names
}

// Reachability reports the last probe result per backend (nil error = reachable).
func (d *ControllerServer) Reachability() map[string]error {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]error, len(d.reachable))
	for k, v := range d.reachable {
		out[k] = v
	}
	return out
}

func (d *ControllerServer) startProbing(ctx context.Context) {
	if d.opts.ProbeInterval <= 0 {
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

func (d *ControllerServer) probeBackends(ctx context.Context) {
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
