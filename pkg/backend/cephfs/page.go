package cephfs

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// pageReaders is how many subvolumes a page reads at once.
const pageReaders = 8

// ListVolumesAfter lists a page of the backend's volumes in ID order (tenant, filesystem ID,
// hash): it reads the subvolume groups' directories, and the subvolumes of the groups it
// walks, through the MDS (listedVolume), pageReaders at a time; the single-threaded mgr
// volumes module is asked only about what the MDS cannot vouch for. The first pages, up
// to the last adopted volume, also read the records of the subvolumes shiphold did not
// create (adoptedVolumes).
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
		if pl.key == groupKey(from.Tenant, from.Location) {
			hashes = hashes[sort.SearchStrings(hashes, from.Hash+"\x00"):]
		}
		for len(hashes) > 0 {
			// Read as many as the page still needs; some may be left out (gone, a clone
			// still copying), and the next ones are read then.
			n := len(hashes)
			if max > 0 && max-len(out) < n {
				n = max - len(out)
			}
			vols, err := c.readListed(s, pl, hashes[:n])
			if err != nil {
				return nil, err
			}
			out = append(out, vols...)
			if max > 0 && len(out) >= max {
				return out, nil
			}
			hashes = hashes[n:]
		}
	}
	return out, nil
}

// readListed reads the subvolumes of hashes in group pl as listedVolume does, pageReaders
// at a time, in order, leaving out those a listing leaves out.
func (c *Controller) readListed(s *session, pl groupPlace, hashes []string) ([]*backend.Volume, error) {
	return readEach(pl.subvolumes(c.name, hashes), func(id volid.Volume, ref volumeRef) (*backend.Volume, error) {
		return c.listedVolume(s, id, ref)
	})
}

// groupPlace is one tenant's subvolume group on one filesystem; key orders them as their
// volume IDs sort.
type groupPlace struct {
	ref              volumeRef
	tenant, loc, key string
}

func groupKey(tenant, loc string) string { return tenant + ":" + loc + ":" }

// subvolumes places the subvolumes of hashes in the group, on backend name.
func (pl groupPlace) subvolumes(name string, hashes []string) []placedSubvolume {
	out := make([]placedSubvolume, len(hashes))
	for i, h := range hashes {
		ref := pl.ref
		ref.sub = subvolumeName(h)
		out[i] = placedSubvolume{id: volid.Volume{Backend: name, Tenant: pl.tenant, Location: pl.loc, Hash: h}, ref: ref}
	}
	return out
}

// groupsFrom lists the tenants' subvolume groups on every filesystem, in ID order, from the
// place of from on (all when from is zero).
func (c *Controller) groupsFrom(s *session, from volid.Volume) ([]groupPlace, error) {
	filesystems := c.filesystems()
	fromKey := groupKey(from.Tenant, from.Location)
	var places []groupPlace
	for fs, loc := range filesystems {
		groups, err := c.dirsOf(s, fs, subvolumesDir)
		if err != nil {
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

// subvolumeHashes lists the hashes of a group's csi-vol- subvolumes, sorted: the group
// directory's subdirectories, read through the MDS (the mgr's `subvolume ls` reads the same
// directory, behind every other command of its volumes module).
func (c *Controller) subvolumeHashes(s *session, ref volumeRef) ([]string, error) {
	subs, err := c.dirsOf(s, ref.fs, groupPath(ref.group))
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
// with retained snapshots, or a clone still copying. What the MDS vouches for (mdsListed)
// costs the mgr nothing; anything else is the mgr's `subvolume info`.
func (c *Controller) listedVolume(s *session, id volid.Volume, ref volumeRef) (*backend.Volume, error) {
	if v := c.mdsListed(s, id, ref); v != nil {
		return v, nil
	}
	info, err := c.info(s, ref)
	if backend.IsNotFound(err) || backend.CodeOf(err) == backend.Pending {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return c.listed(id, ref, info.Path, quotaBytes(info)), nil
}

func (c *Controller) listed(id volid.Volume, ref volumeRef, path string, bytes int64) *backend.Volume {
	return &backend.Volume{
		ID: id, CapacityBytes: bytes,
		Context: map[string]string{CtxFSName: ref.fs, CtxSubvolumeGroup: ref.group, CtxSubvolumeName: ref.sub, CtxRootPath: path, CtxClusterID: c.cfg.ClusterID},
	}
}

// mdsListed reads a subvolume through the MDS, four requests that spare the mgr's volumes
// module a `subvolume info` (about 20 ms of its one thread: a page of 100 took 2.1 s at
// 2,000 volumes). A recorded subvolume (the record is written once its content is final:
// a clone still copying, or failed, has none) without snapshots (one deleted with its
// snapshots retained keeps its base directory, and its record, only for them, and one
// made anew over it keeps them too) is complete; its one data directory is its path, and
// that directory's quota its size (0 without one). It answers nil, for the mgr to tell,
// for any other subvolume, and on any error.
func (c *Controller) mdsListed(s *session, id volid.Volume, ref volumeRef) *backend.Volume {
	base := ref.baseDir()
	var v *backend.Volume
	s.do("read subvolume "+ref.String()+" through the MDS", func() error {
		if _, err := s.conn.GetXattr(ref.fs, base, recordXattr); err != nil {
			return err
		}
		snaps, err := s.conn.GetXattr(ref.fs, base, "ceph.dir.rsnaps")
		if err != nil || strings.TrimSpace(string(snaps)) != "0" {
			return err
		}
		dirs, err := s.conn.Subdirs(ref.fs, base)
		if err != nil || len(dirs) != 1 {
			return err
		}
		path := base + "/" + dirs[0]
		quota, err := s.conn.GetXattr(ref.fs, path, "ceph.quota.max_bytes")
		if isErrno(err, syscall.ENODATA) {
			quota, err = []byte("0"), nil // no quota: the mgr says "infinite", quotaBytes 0
		}
		if err != nil {
			return err
		}
		bytes, err := strconv.ParseInt(strings.TrimSpace(string(quota)), 10, 64)
		if err != nil {
			return err
		}
		v = c.listed(id, ref, path, bytes)
		return nil
	})
	return v
}
