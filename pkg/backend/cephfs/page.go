package cephfs

import (
	"context"
	"sort"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListVolumesAfter lists a page of the backend's volumes in ID order (tenant, filesystem ID,
// hash): it lists the subvolume groups, and the subvolumes of the groups it walks, and asks
// the mgr for the details (info) of the page's subvolumes only, where ListVolumes asks for
// every subvolume's. The first pages, up to the last adopted volume, also read the records
// of the subvolumes shiphold did not create (adoptedVolumes).
func (c *Controller) ListVolumesAfter(ctx context.Context, after string, max int) ([]*backend.Volume, error) {
	from, err := volid.ParseVolume(after)
	if err != nil || from.Backend != c.name {
		from = volid.Volume{}
	}
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	var out []*backend.Volume
	if from.Backend == "" || from.Object != "" {
		// Adopted IDs ("a1:") sort before created ones: they come first.
		adopted, err := c.adoptedVolumes(s, "")
		if err != nil {
			return nil, err
		}
		if out = backend.PageOf(adopted, after, max); max > 0 && len(out) >= max {
			return out, nil
		}
		from = volid.Volume{}
	}
	places, err := c.groupsFrom(s, from)
	if err != nil {
		return nil, err
	}
	for _, pl := range places {
		hashes, err := c.subvolumeHashes(s, pl.ref)
		if err != nil {
			return nil, err
		}
		for _, h := range hashes {
			if pl.key == groupKey(from.Tenant, from.Location) && h <= from.Hash {
				continue
			}
			id := volid.Volume{Backend: c.name, Tenant: pl.tenant, Location: pl.loc, Hash: h}
			ref := pl.ref
			ref.sub = subvolumeName(h)
			v, err := c.listedVolume(s, id, ref)
			if err != nil {
				return nil, err
			}
			if v != nil {
				out = append(out, v)
			}
			if max > 0 && len(out) >= max {
				return out, nil
			}
		}
	}
	return out, nil
}

// groupPlace is one tenant's subvolume group on one filesystem; key orders them as their
// volume IDs sort.
type groupPlace struct {
	ref              volumeRef
	tenant, loc, key string
}

func groupKey(tenant, loc string) string { return tenant + ":" + loc + ":" }

// groupsFrom lists the tenants' subvolume groups on every filesystem, in ID order, from the
// place of from on (all when from is zero).
func (c *Controller) groupsFrom(s *session, from volid.Volume) ([]groupPlace, error) {
	c.mu.Lock()
	filesystems := make(map[string]string, len(c.fsIDs))
	for n, id := range c.fsIDs {
		filesystems[n] = id
	}
	c.mu.Unlock()
	fromKey := groupKey(from.Tenant, from.Location)
	var places []groupPlace
	for fs, loc := range filesystems {
		var groups []string
		if err := s.do("list subvolume groups of "+fs, func() (err error) {
			groups, err = s.fsa.ListSubVolumeGroups(fs)
			return err
		}); err != nil {
			return nil, err
		}
		for _, g := range groups {
			t, ok := tenantOfGroup(c.prefix, g)
			if k := groupKey(t, loc); ok && (from.Backend == "" || k >= fromKey) {
				places = append(places, groupPlace{ref: volumeRef{fs: fs, group: g}, tenant: t, loc: loc, key: k})
			}
		}
	}
	sort.Slice(places, func(i, j int) bool { return places[i].key < places[j].key })
	return places, nil
}

// subvolumeHashes lists the hashes of a group's csi-vol- subvolumes, sorted.
func (c *Controller) subvolumeHashes(s *session, ref volumeRef) ([]string, error) {
	var subs []string
	err := s.do("list subvolumes of "+ref.fs+":"+ref.group, func() (err error) {
		subs, err = s.fsa.ListSubVolumes(ref.fs, ref.group)
		return err
	})
	if backend.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var hashes []string
	for _, sub := range subs {
		if h, ok := hashOf(subvolumePrefix, sub); ok {
			hashes = append(hashes, h)
		}
	}
	sort.Strings(hashes)
	return hashes, nil
}

// listedVolume reads one subvolume as a listing reports it: nil when it is gone, deleted
// with retained snapshots, or a clone still copying.
func (c *Controller) listedVolume(s *session, id volid.Volume, ref volumeRef) (*backend.Volume, error) {
	info, err := c.info(s, ref)
	if backend.IsNotFound(err) || backend.CodeOf(err) == backend.Pending {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &backend.Volume{
		ID: id, CapacityBytes: quotaBytes(info),
		Context: map[string]string{CtxFSName: ref.fs, CtxSubvolumeGroup: ref.group, CtxSubvolumeName: ref.sub, CtxRootPath: info.Path, CtxClusterID: c.cfg.ClusterID},
	}, nil
}
