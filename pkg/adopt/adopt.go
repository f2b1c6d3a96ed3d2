// Package adopt brings storage objects that shiphold did not create under its management in
// place (shipholdctl import): an RBD image, a CephFS subvolume or plain directory, an
// Isilon directory keep their data and name, the backend adds what its own volumes have,
// and the object gets a PersistentVolume with its adopted volume ID. Legacy NFS PVs on an
// Isilon are found and re-bound in bulk (frompvs.go) with the migration cutover's careful sequence.
package adopt

import (
	"context"
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
)

// Request is one object to adopt on one configured backend.
type Request struct {
	Backend string
	backend.AdoptRequest
}

// Adopt hands the request to its backend.
func Adopt(ctx context.Context, ctrls map[string]backend.Controller, req Request) (*backend.Volume, error) {
	c, ok := ctrls[req.Backend]
	if !ok {
		return nil, fmt.Errorf("no backend %q in the config", req.Backend)
	}
	a, ok := c.(backend.Adopter)
	if !ok {
		return nil, fmt.Errorf("backend %q (%s) cannot adopt", req.Backend, c.Kind())
	}
	if req.Name == "" || req.Tenant == "" {
		return nil, fmt.Errorf("adoption of %s needs a name and a tenant", req.Object)
	}
	return a.Adopt(ctx, &req.AdoptRequest)
}
