package driver

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
)

// collectTimeout bounds one sweep of one backend; collectInterval spaces the sweeps.
const (
	collectTimeout  = 2 * time.Minute
	collectInterval = 2 * time.Minute
)

// startCollecting sets going, at controller start-up and then every collectInterval, the
// removal of what a killed controller left half done (an RBD image moved to the trash whose
// purge was never queued, or is held up by a dead client's watch).
func (d *ControllerServer) startCollecting(ctx context.Context) {
	for name, c := range d.opts.Controllers {
		col, ok := c.(backend.Collector)
		if !ok {
			continue
		}
		go func() {
			for {
				d.collect(ctx, name, col)
				select {
				case <-ctx.Done():
					return
				case <-time.After(collectInterval):
				}
			}
		}()
	}
}

func (d *ControllerServer) collect(ctx context.Context, name string, col backend.Collector) {
	cctx, cancel := context.WithTimeout(ctx, collectTimeout)
	defer cancel()
	found, err := col.Collect(cctx)
	if err != nil {
		klog.Warningf("backend %s: collecting leftovers: %v", name, err)
	}
	for _, l := range found {
		klog.V(2).Infof("backend %s: leftover %s %s (tenant %s): %s", name, l.Kind, l.Name, l.Tenant, l.State)
	}
}
