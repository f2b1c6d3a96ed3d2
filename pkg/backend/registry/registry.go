// Package registry opens the backends a config file names, one package per kind.
package registry

import (
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
)

// Backends are the opened sides of every configured backend, keyed by backend name.
type Backends struct {
	Controllers map[string]backend.Controller
	Stagers     map[string]backend.Stager
	conns       *ceph.Connections
}

// Open builds the controller side, the node side, or both, for every backend in cfg.
// Opening does not contact storage: an unreachable backend must not stop the plugin.
func Open(cfg *config.Config, controllers, stagers bool) (*Backends, error) {
	b := &Backends{Controllers: map[string]backend.Controller{}, Stagers: map[string]backend.Stager{}, conns: ceph.NewConnections()}
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		if controllers {
			c, err := openController(bc, b.conns)
			if err != nil {
				b.Close()
				return nil, fmt.Errorf("backend %q: %w", bc.Name, err)
			}
			b.Controllers[bc.Name] = c
		}
		if stagers {
			s, err := openStager(bc)
			if err != nil {
				b.Close()
				return nil, fmt.Errorf("backend %q: %w", bc.Name, err)
			}
			b.Stagers[bc.Name] = s
		}
	}
	return b, nil
}

func openController(bc *config.Backend, conns *ceph.Connections) (backend.Controller, error) {
	switch bc.Kind {
	case backend.KindRBD:
		return rbd.NewController(bc, conns)
	case backend.KindCephFS:
		return cephfs.NewController(bc, conns)
	case backend.KindIsilon:
		return isilon.NewController(bc)
	}
	return nil, fmt.Errorf("unknown kind %q", bc.Kind)
}

func openStager(bc *config.Backend) (backend.Stager, error) {
	switch bc.Kind {
	case backend.KindRBD:
		return rbd.NewStager(bc)
	case backend.KindCephFS:
		return cephfs.NewStager(bc)
	case backend.KindIsilon:
		return isilon.NewStager(bc)
	}
	return nil, fmt.Errorf("unknown kind %q", bc.Kind)
}

// Close releases every controller and the shared Ceph connections.
func (b *Backends) Close() {
	for _, c := range b.Controllers {
		c.Close()
	}
	b.conns.Close()
}
