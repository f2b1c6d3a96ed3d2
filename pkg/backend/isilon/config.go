package isilon

import (
	"fmt"
	"path"
	"strings"
)

// Config is the isilon section of a backend of kind isilon in the config file: a
// PowerScale OneFS array.
type Config struct {
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
	// MaxRequestsInFlight bounds the operations (a create, a publish, a delete...) the
	// backend has in flight at once, each with at most two Platform API requests open;
	// 0 means DefaultMaxRequestsInFlight.
	MaxRequestsInFlight int `json:"maxRequestsInFlight,omitempty"`
	// Zones are further access zones a StorageClass may pick (parameter accessZone); the
	// zone accessZone with isiPath stays the default.
	Zones []Zone `json:"zones,omitempty"`
}

// Zone is an access zone volumes may be made in: tenant directories go below IsiPath,
// which must lie within the zone's base path on the array. Key is the zone's token in
// volume IDs (1-8 of [a-z0-9-]); it must never change while volumes of the zone exist.
type Zone struct {
	Name    string `json:"name"`
	Key     string `json:"key"`
	IsiPath string `json:"isiPath"`
	// NFSServer is the zone's SmartConnect name (its exports are served there only), used
	// when a class names no nfsServer; the backend's nfsServer when empty.
	NFSServer string `json:"nfsServer,omitempty"`
}

// Validate names the first missing or wrong field.
func (i *Config) Validate() error {
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
}

// validateZones checks that zone names and keys are unique and that no two zones' (nor the
// default's) isiPaths nest, so every volume directory belongs to exactly one zone.
func (i *Config) validateZones() error {
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

// NodeAddress is the source address of this node's route to the backend's NFS server: the
// address the server sees, so the one an export's client list must name.
func (c *Config) NodeAddress() (string, error) {
	if c.NFSServer == "" {
		return "", nil
	}
	return SourceAddressToward(c.NFSServer)
}
