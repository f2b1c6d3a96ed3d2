// Package config reads the driver's config file: the named storage backends a StorageClass
// can choose, and the per-tenant quotas.
package config

import (
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/volid"
)

// Config is the whole config file.
type Config struct {
	Backends []Backend `json:"backends"`
	Tenants  Tenants   `json:"tenants,omitempty"`
}

// Backend is one named storage backend: its kind, and the kind's own section of the file
// (the rbd: section of a backend of kind rbd), which the kind's package defines.
type Backend struct {
	Name string
	Kind string
	// Section is the kind's section as its package decoded it (*rbd.Config for kind rbd).
	Section Section
	// Topology, if set, limits the backend to the nodes it selects; unset, every node
	// reaches it.
	Topology *Topology
}

// Tenants holds capacity and volume-count quotas per tenant.
type Tenants struct {
	Default   TenantQuota            `json:"default,omitempty"`
	Overrides map[string]TenantQuota `json:"overrides,omitempty"`
}

// TenantQuota limits one tenant across all backends; zero means unlimited.
type TenantQuota struct {
	MaxVolumes int   `json:"maxVolumes,omitempty"`
	MaxBytes   int64 `json:"maxBytes,omitempty"`
}

// QuotaFor returns the quota that applies to tenant.
func (t Tenants) QuotaFor(tenant string) TenantQuota {
	if q, ok := t.Overrides[tenant]; ok {
		return q
	}
	return t.Default
}

// Load reads and validates a config file whose backends are of the kinds in sections.
func Load(path string, sections Sections) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, sections)
}

// Parse decodes a config strictly (an unknown field is an error), each backend's section
// as the type its kind gives in sections, and validates it.
func Parse(data []byte, sections Sections) (*Config, error) {
	var f struct {
		Backends []map[string]json.RawMessage `json:"backends"`
		Tenants  Tenants                      `json:"tenants,omitempty"`
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{Backends: make([]Backend, len(f.Backends)), Tenants: f.Tenants}
	for i, raw := range f.Backends {
		b := &c.Backends[i]
		if err := b.decode(raw, sections); err != nil {
			where := fmt.Sprintf("backends[%d]", i)
			if b.Name != "" {
				where = fmt.Sprintf("backend %q", b.Name)
			}
			return nil, fmt.Errorf("config: %s: %w", where, err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks names, sections and topologies, naming the first offender.
func (c *Config) Validate() error {
	if len(c.Backends) == 0 {
		return fmt.Errorf("config: no backends")
	}
	seen := map[string]bool{}
	for i := range c.Backends {
		b := &c.Backends[i]
		if err := volid.ValidBackend(b.Name); err != nil {
			return fmt.Errorf("config: backends[%d]: %v", i, err)
		}
		if seen[b.Name] {
			return fmt.Errorf("config: backend %q defined twice", b.Name)
		}
		seen[b.Name] = true
		if b.Section == nil {
			return fmt.Errorf("config: backend %q: kind %s needs a %s section", b.Name, b.Kind, b.Kind)
		}
		if err := b.Section.Validate(); err != nil {
			return fmt.Errorf("config: backend %q: %w", b.Name, err)
		}
		if err := b.Topology.validate(); err != nil {
			return fmt.Errorf("config: backend %q: %w", b.Name, err)
		}
	}
	for name := range c.Tenants.Overrides {
		if err := volid.ValidTenant(name); err != nil {
			return fmt.Errorf("config: tenants.overrides: %v", err)
		}
	}
	return nil
}

// Backend returns the named backend.
func (c *Config) Backend(name string) (*Backend, bool) {
	for i := range c.Backends {
		if c.Backends[i].Name == name {
			return &c.Backends[i], true
		}
	}
	return nil, false
}
