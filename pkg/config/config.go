// Package config reads the driver's config file: the named storage backends a StorageClass
// can choose, and the per-tenant quotas.
package config

import (
	"fmt"
	"os"
	"path"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/volid"
)

// Config is the whole config file.
type Config struct {
	Backends []Backend `json:"backends"`
	Tenants  Tenants   `json:"tenants,omitempty"`
}

// Backend is one named storage backend; exactly one of the kind sections is set.
type Backend struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"`
	RBD    *RBD    `json:"rbd,omitempty"`
	CephFS *CephFS `json:"cephfs,omitempty"`
	Isilon *Isilon `json:"isilon,omitempty"`
	// Topology, if set, limits the backend to the nodes it selects; unset, every node
	// reaches it.
	Topology *Topology `json:"topology,omitempty"`
}

// CephCluster locates a Ceph cluster and the credentials used when a request brings none.
type CephCluster struct {
	// ClusterID is the cluster fsid (or any stable name the admin chooses).
	ClusterID string   `json:"clusterID"`
	Monitors  []string `json:"monitors"`
	// ConfFile is an optional ceph.conf for extra client options.
	ConfFile    string          `json:"confFile,omitempty"`
	Credentials CephCredentials `json:"credentials,omitempty"`
}

// CephCredentials name a cephx user and where its key is. CSI secrets (userID, userKey)
// take precedence when a request carries them.
type CephCredentials struct {
	UserID      string `json:"userID,omitempty"`
	KeyringFile string `json:"keyringFile,omitempty"`
	KeyFile     string `json:"keyFile,omitempty"`
}

// RBD configures a Ceph RBD backend.
type RBD struct {
	CephCluster `json:",inline"`
	Pool        string `json:"pool"`
	// ImageFeatures is the default comma-separated feature list for new images.
	ImageFeatures string `json:"imageFeatures,omitempty"`
	// Mounter is the default node attach strategy: krbd, rbd-nbd, rbd-fuse or auto.
	Mounter string `json:"mounter,omitempty"`
}

// CephFS configures a CephFS backend.
type CephFS struct {
	CephCluster `json:",inline"`
	FSName      string `json:"fsName"`
	// SubvolumeGroupPrefix is put before the tenant name to form its subvolume group.
	SubvolumeGroupPrefix string `json:"subvolumeGroupPrefix,omitempty"`
	Mounter              string `json:"mounter,omitempty"`
}

// Isilon configures a PowerScale OneFS backend.
type Isilon struct {
	Endpoint           string `json:"endpoint"`
	AccessZone         string `json:"accessZone,omitempty"`
	IsiPath            string `json:"isiPath"`
	NFSServer          string `json:"nfsServer"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
	CACertFile         string `json:"caCertFile,omitempty"`
	// CredentialsFile holds "username" and "password" lines (key: value), used when a
	// request carries no secret.
	CredentialsFile string `json:"credentialsFile,omitempty"`
	// AuthType is "session" (default) or "basic".
	AuthType string `json:"authType,omitempty"`
	// RequestTimeout bounds one Platform API call, e.g. "30s".
	RequestTimeout string `json:"requestTimeout,omitempty"`
	// CopyTimeout bounds the data copy of a clone or restore, which runs in the
	// background of the requests that wait for it (default "12h").
	CopyTimeout string `json:"copyTimeout,omitempty"`
	// CopySettle is how long an unfinished clone's directory must stay unchanged before a
	// new copy into it starts: a copy started by a previous controller may still run on
	// the array (default "30s").
	CopySettle string `json:"copySettle,omitempty"`
	// MaxRequestsInFlight bounds the Platform API requests the backend has open at once;
	// 0 means the default of pkg/backend/isilon.
	MaxRequestsInFlight int `json:"maxRequestsInFlight,omitempty"`
	// Zones are further access zones a StorageClass may pick (parameter accessZone); the
	// zone accessZone with isiPath stays the default.
	Zones []IsilonZone `json:"zones,omitempty"`
}

// IsilonZone is an access zone volumes may be made in: tenant directories go below IsiPath,
// which must lie within the zone's base path on the array. Key is the zone's token in
// volume IDs (1-8 of [a-z0-9-]); it must never change while volumes of the zone exist.
type IsilonZone struct {
	Name    string `json:"name"`
	Key     string `json:"key"`
	IsiPath string `json:"isiPath"`
	// NFSServer is the zone's SmartConnect name (its exports are served there only), used
	// when a class names no nfsServer; the backend's nfsServer when empty.
	NFSServer string `json:"nfsServer,omitempty"`
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

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data)
}

// Parse decodes a config strictly (an unknown field is an error) and validates it.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks names, kinds and required fields, naming the first offender.
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
		if err := b.validate(); err != nil {
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

func (b *Backend) validate() error {
	sections := 0
	for _, set := range []bool{b.RBD != nil, b.CephFS != nil, b.Isilon != nil} {
		if set {
			sections++
		}
	}
	if sections != 1 {
		return fmt.Errorf("exactly one of rbd, cephfs, isilon must be set, found %d", sections)
	}
	switch b.Kind {
	case "rbd":
		if b.RBD == nil {
			return fmt.Errorf("kind rbd needs an rbd section")
		}
		if b.RBD.Pool == "" {
			return fmt.Errorf("rbd.pool is required")
		}
		return b.RBD.CephCluster.validate("rbd")
	case "cephfs":
		if b.CephFS == nil {
			return fmt.Errorf("kind cephfs needs a cephfs section")
		}
		if b.CephFS.FSName == "" {
			return fmt.Errorf("cephfs.fsName is required")
		}
		return b.CephFS.CephCluster.validate("cephfs")
	case "isilon":
		if b.Isilon == nil {
			return fmt.Errorf("kind isilon needs an isilon section")
		}
		i := b.Isilon
		switch {
		case i.Endpoint == "":
			return fmt.Errorf("isilon.endpoint is required")
		case !strings.HasPrefix(i.IsiPath, "/ifs/"):
			return fmt.Errorf("isilon.isiPath %q must be an absolute path below /ifs/", i.IsiPath)
		case i.NFSServer == "":
			return fmt.Errorf("isilon.nfsServer is required")
		case i.AuthType != "" && i.AuthType != "session" && i.AuthType != "basic":
			return fmt.Errorf("isilon.authType %q must be session or basic", i.AuthType)
		case i.MaxRequestsInFlight < 0:
			return fmt.Errorf("isilon.maxRequestsInFlight %d must be positive, or 0 for the default", i.MaxRequestsInFlight)
		}
		return i.validateZones()
	default:
		return fmt.Errorf("unknown kind %q (want rbd, cephfs or isilon)", b.Kind)
	}
}

func (c *CephCluster) validate(section string) error {
	if c.ClusterID == "" {
		return fmt.Errorf("%s.clusterID is required", section)
	}
	if len(c.Monitors) == 0 {
		return fmt.Errorf("%s.monitors is required", section)
	}
	if c.Credentials.KeyringFile != "" && c.Credentials.KeyFile != "" {
		return fmt.Errorf("%s.credentials: set keyringFile or keyFile, not both", section)
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

// validateZones checks that zone names and keys are unique and that no two zones' (nor the
// default's) isiPaths nest, so every volume directory belongs to exactly one zone.
func (i *Isilon) validateZones() error {
	def := i.AccessZone
	if def == "" {
		def = "System"
	}
	names, keys, paths := map[string]bool{def: true}, map[string]bool{}, []string{path.Clean(i.IsiPath)}
	for n, z := range i.Zones {
		p := path.Clean(z.IsiPath)
		switch {
		case z.Name == "":
			return fmt.Errorf("isilon.zones[%d].name is required", n)
		case names[z.Name]:
			return fmt.Errorf("isilon.zones[%d].name %q is listed twice (or is the default accessZone)", n, z.Name)
		case len(z.Key) < 1 || len(z.Key) > 8 || strings.Trim(z.Key, "abcdefghijklmnopqrstuvwxyz0123456789-") != "":
			return fmt.Errorf("isilon.zones[%d].key %q must be 1-8 characters of [a-z0-9-]", n, z.Key)
		case keys[z.Key]:
			return fmt.Errorf("isilon.zones[%d].key %q is used twice", n, z.Key)
		case !strings.HasPrefix(z.IsiPath, "/ifs/"):
			return fmt.Errorf("isilon.zones[%d].isiPath %q must be an absolute path below /ifs/", n, z.IsiPath)
		}
		for _, o := range paths {
			if p == o || strings.HasPrefix(p, o+"/") || strings.HasPrefix(o, p+"/") {
				return fmt.Errorf("isilon.zones[%d].isiPath %q overlaps %q: each zone needs its own tree", n, z.IsiPath, o)
			}
		}
		names[z.Name], keys[z.Key], paths = true, true, append(paths, p)
	}
	return nil
}
