package cephfs

import (
	"sort"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// adoptedVolumes lists the subvolumes adopted in place by tenant ("" for all), sorted by
// ID. An adopted subvolume stays in its own group and carries shiphold's request record
// on its base directory, so every subvolume outside shiphold's own places is read for
// one: directory listings and attribute reads through the MDS, the single-threaded mgr
// asked only for the adopted ones' details.
func (c *Controller) adoptedVolumes(s *session, tenant string) ([]*backend.Volume, error) {
	filesystems := c.filesystems()
	var out []*backend.Volume
	for fs, loc := range filesystems {
		groups, err := c.dirsOf(s, fs, subvolumesDir)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			if internalDirs[g] {
				continue
			}
			vols, err := c.adoptedInGroup(s, volumeRef{fs: fs, group: g}, loc, tenant)
			if err != nil {
				return nil, err
			}
			out = append(out, vols...)
		}
		dirs, err := c.adoptedDirs(s, fs, loc, tenant)
		if err != nil {
			return nil, err
		}
		out = append(out, dirs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	return out, nil
}

// internalDirs are the mgr volumes module's own directories beside the groups in
// /volumes (_nogroup, the default group, is a group).
var internalDirs = map[string]bool{"_deleting": true, "_index": true, "_legacy": true}

// adoptedInGroup reads the records of a group's subvolumes, passing over shiphold's own
// (csi-vol-<hash> in a tenant's group).
func (c *Controller) adoptedInGroup(s *session, group volumeRef, loc, tenant string) ([]*backend.Volume, error) {
	subs, err := c.dirsOf(s, group.fs, subvolumesDir+"/"+group.group)
	if err != nil {
		return nil, err
	}
	_, ownGroup := tenantOfGroup(c.prefix, group.group)
	var out []*backend.Volume
	for _, sub := range subs {
		if _, own := hashOf(subvolumePrefix, sub); own && ownGroup {
			continue
		}
		ref := group
		ref.sub = sub
		v, err := c.adoptedVolume(s, ref, loc)
		if err != nil {
			return nil, err
		}
		if v != nil && (tenant == "" || v.ID.Tenant == tenant) {
			out = append(out, v)
		}
	}
	return out, nil
}

// adoptedVolume reads one subvolume: nil when it has no record of this backend's adoption
// (or one that is not readable), is gone, or is busy (a clone the mgr still copies).
func (c *Controller) adoptedVolume(s *session, ref volumeRef, loc string) (*backend.Volume, error) {
	rec, found, err := c.recordOnDir(s, ref)
	if err != nil {
		if backend.IsNotFound(err) || backend.CodeOf(err) == backend.Internal {
			return nil, nil
		}
		return nil, err
	}
	if !found || rec.Backend != c.name || rec.Request == nil || rec.Request.Tenant == "" {
		return nil, nil
	}
	id, err := volid.Adopted(c.name, rec.Request.Tenant, loc, ref.group+"/"+ref.sub)
	if err != nil {
		return nil, nil
	}
	v, err := c.volume(s, id, ref, rec)
	if backend.IsNotFound(err) || backend.CodeOf(err) == backend.Pending {
		return nil, nil
	}
	return v, err
}
