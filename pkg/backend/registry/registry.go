// Package registry opens the backends a config file names, one package per kind. A new
// kind is its own package under pkg/backend (with its Capabilities and the type of its
// section of the config file) and one line in kinds.
package registry

import (
	"fmt"
	"reflect"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
)

// kind is what the registry knows of a backend kind: what it serves, its section of the
// config file, and how its sides open.
type kind struct {
	caps       backend.Capabilities
	section    func() config.Section
	controller func(*config.Backend, *ceph.Connections) (backend.Controller, error)
	stager     func(*config.Backend) (backend.Stager, error)
}

// kinds are the backend kinds this driver serves, one line each.
var kinds = []kind{
	{rbd.Capabilities, section[rbd.Config], sharing(rbd.NewController), stager(rbd.NewStager)},
	{cephfs.Capabilities, section[cephfs.Config], sharing(cephfs.NewController), stager(cephfs.NewStager)},
	{isilon.Capabilities, section[isilon.Config], ownConnections(isilon.NewController), stager(isilon.NewStager)},
}

// section makes an empty config section of the kind whose section type is T.
func section[T any, S interface {
	*T
	config.Section
}]() config.Section {
	return S(new(T))
}

// Sections are the config file sections of every kind, by kind name: what config.Load
// decodes each backend's section into.
func Sections() config.Sections {
	out := make(config.Sections, len(kinds))
	for _, k := range kinds {
		out[k.caps.Kind] = k.section
	}
	return out
}

// sharing adapts a controller that uses the shared Ceph connections.
func sharing[C backend.Controller](open func(*config.Backend, *ceph.Connections) (C, error)) func(*config.Backend, *ceph.Connections) (backend.Controller, error) {
	return func(bc *config.Backend, conns *ceph.Connections) (backend.Controller, error) {
		c, err := open(bc, conns)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// ownConnections adapts a controller that keeps its own connection to the storage.
func ownConnections[C backend.Controller](open func(*config.Backend) (C, error)) func(*config.Backend, *ceph.Connections) (backend.Controller, error) {
	return sharing(func(bc *config.Backend, _ *ceph.Connections) (C, error) { return open(bc) })
}

func stager[S backend.Stager](open func(*config.Backend) (S, error)) func(*config.Backend) (backend.Stager, error) {
	return func(bc *config.Backend) (backend.Stager, error) {
		s, err := open(bc)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// Kinds are the capabilities of every kind, by kind name: what the driver asks.
func Kinds() map[string]backend.Capabilities {
	out := make(map[string]backend.Capabilities, len(kinds))
	for _, k := range kinds {
		out[k.caps.Kind] = k.caps
	}
	return out
}

func lookup(name string) (kind, error) {
	for _, k := range kinds {
		if k.caps.Kind == name {
			return k, nil
		}
	}
	return kind{}, fmt.Errorf("unknown kind %q", name)
}

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
		if err := b.open(&cfg.Backends[i], controllers, stagers); err != nil {
			b.Close()
			return nil, fmt.Errorf("backend %q: %w", cfg.Backends[i].Name, err)
		}
	}
	return b, nil
}

func (b *Backends) open(bc *config.Backend, controllers, stagers bool) error {
	k, err := lookup(bc.Kind)
	if err != nil {
		return err
	}
	if want := k.section(); reflect.TypeOf(bc.Section) != reflect.TypeOf(want) {
		return fmt.Errorf("kind %s takes its section as %T, the config has %T", bc.Kind, want, bc.Section)
	}
	if controllers {
		c, err := k.controller(bc, b.conns)
		if err != nil {
			return err
		}
		b.Controllers[bc.Name] = c
	}
	if stagers {
		s, err := k.stager(bc)
		if err != nil {
			return err
		}
		b.Stagers[bc.Name] = s
	}
	return nil
}

// Close releases every controller and the shared Ceph connections.
func (b *Backends) Close() {
	for _, c := range b.Controllers {
		c.Close()
	}
	b.conns.Close()
}
