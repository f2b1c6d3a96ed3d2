package driver

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
)

// collectTimeout bounds the start-up sweep of one backend.
const collectTimeout = 2 * time.Minute

// startCollecting sets going, once at controller start-up, the removal of what a killed
// controller left half done (an RBD image moved to the trash whose purge was never queued).
func (d *Driver) startCollecting(ctx context.Context) {
	if d.opts.Mode == ModeNode {
		return
	}
	for name, c := range d.opts.Controllers {
		col, ok := c.(backend.Collector)
		if !ok {
			continue
		}
		go func() {
			cctx, cancel := context.WithTimeout(ctx, collectTimeout)
			defer cancel()
			found, err := col.Collect(cctx)
			if err != nil {
				klog.Warningf("backend %s: collecting leftovers at start-up: %v", name, err)
			}
			for _, l := range found {
				klog.Infof("backend %s: leftover %s %s (tenant %s): %s", name, l.Kind, l.Name, l.Tenant, l.State)
			}
		}()
	}
}
