package isilon

import (
	"context"
	"path"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ParamAccessZone picks one of the backend's access zones (isilon.zones, or the default
// accessZone) for a StorageClass's volumes.
const ParamAccessZone = "accessZone"

// accessZone is where a volume lives: OneFS zone name, the volume ID's location token (""
// for the backend's default zone, so IDs made before zones keep their meaning) and the
// directory holding the zone's tenant directories. Namespace, quota and snapshot calls take
// full /ifs paths; export calls name the zone (exports are per zone on OneFS).
type accessZone struct {
	name, key, isiPath string
	nfsServer          string // the zone's SmartConnect name, else the backend's nfsServer
}

func defaultZone(cfg *Config) accessZone {
	name := cfg.AccessZone
	if name == "" {
		name = "System"
	}
	return accessZone{name: name, isiPath: path.Clean(cfg.IsiPath), nfsServer: cfg.NFSServer}
}

// zones lists the default zone first, then isilon.zones.
func zones(cfg *Config) []accessZone {
	out := []accessZone{defaultZone(cfg)}
	for _, z := range cfg.Zones {
		server := z.NFSServer
		if server == "" {
			server = cfg.NFSServer
		}
		out = append(out, accessZone{name: z.Name, key: z.Key, isiPath: path.Clean(z.IsiPath), nfsServer: server})
	}
	return out
}

// zoneOfID resolves a volume ID's location token. A token the config no longer lists is
// FailedPrecondition, never NotFound: a delete must not pass for done while the data stays.
func zoneOfID(cfg *Config, id volid.Volume) (accessZone, error) {
	for _, z := range zones(cfg) {
		if z.key == id.Location {
			return z, nil
		}
	}
	return accessZone{}, backend.Errorf(backend.FailedPrecondition, "isilon: volume %s is in access zone key %q, which isilon.zones of backend %q no longer lists; add the zone back to the config", id, id.Location, id.Backend)
}

// zoneOfParams is the zone a StorageClass's accessZone parameter names, else the default.
func zoneOfParams(cfg *Config, params map[string]string) (accessZone, error) {
	all := zones(cfg)
	want := params[ParamAccessZone]
	if want == "" {
		return all[0], nil
	}
	names := make([]string, 0, len(all))
	for _, z := range all {
		if z.name == want {
			return z, nil
		}
		names = append(names, z.name)
	}
	return accessZone{}, backend.Errorf(backend.InvalidArgument, "isilon: StorageClass parameter %s=%q is not an access zone of this backend; allowed: %s (add others to isilon.zones)", ParamAccessZone, want, strings.Join(names, ", "))
}

func (z accessZone) tenantDir(tenant string) string { return path.Join(z.isiPath, tenant) }

// volumeDir is where a volume of the zone lives; an adopted one stays where it was.
func (z accessZone) volumeDir(id volid.Volume) string {
	if id.Object != "" {
		return id.Object
	}
	return path.Join(z.isiPath, id.Tenant, volumePrefix+id.Hash)
}

// zoneOfPath is the zone whose tree holds dir.
func zoneOfPath(cfg *Config, dir string) (accessZone, bool) {
	for _, z := range zones(cfg) {
		if strings.HasPrefix(path.Clean(dir), z.isiPath+"/") {
			return z, true
		}
	}
	return accessZone{}, false
}

// checkSameZone refuses a clone or restore from another access zone: zones separate who may
// reach data (their own authentication and exports), so a copy across them is an admin's
// decision, not a StorageClass's.
func checkSameZone(z accessZone, req *backend.VolumeRequest) error {
	var src *volid.Volume
	switch {
	case req.SourceSnapshot != nil:
		src = &req.SourceSnapshot.Volume
	case req.SourceVolume != nil:
		src = req.SourceVolume
	default:
		return nil
	}
	if src.Location == z.key {
		return nil
	}
	return backend.Errorf(backend.InvalidArgument, "isilon: source %s is in another access zone than %s (the class's %s); clones and restores stay within one zone", sourceString(req), z.name, ParamAccessZone)
}

// checkZone makes sure, once per process, that a zone of isilon.zones exists on the array
// and that its isiPath lies within the zone's base path, before anything is made there:
// OneFS would refuse the export only after the directory and quota exist.
func (c *Controller) checkZone(ctx context.Context, a array, z accessZone) error {
	if z.key == "" {
		return nil // the default zone, as before zones were configurable
	}
	c.mu.Lock()
	known := c.zonesChecked[z.name]
	c.mu.Unlock()
	if known {
		return nil
	}
	base, err := a.ZoneBase(ctx, z.name)
	if backend.IsNotFound(err) {
		return backend.Errorf(backend.FailedPrecondition, "isilon: access zone %q of isilon.zones does not exist on the array; fix the backend config", z.name)
	}
	if err != nil {
		return err
	}
	if base != "/ifs" && !strings.HasPrefix(z.isiPath, base+"/") {
		return backend.Errorf(backend.FailedPrecondition, "isilon: isilon.zones %q: isiPath %s is not within the access zone's base path %s on the array; fix the backend config", z.name, z.isiPath, base)
	}
	c.mu.Lock()
	c.zonesChecked[z.name] = true
	c.mu.Unlock()
	return nil
}
