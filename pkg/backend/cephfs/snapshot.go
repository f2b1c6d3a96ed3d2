package cephfs

import (
	"context"
	"path"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

func (c *Controller) CreateSnapshot(ctx context.Context, source volid.Volume, name string, params, secrets map[string]string) (*backend.Snapshot, error) {
	if isDirObject(source.Object) {
		return nil, noDirSnapshots(source)
	}
	s, err := c.session(ctx, secrets)
	if err != nil {
		return nil, err
	}
	ref, err := c.ref(s, source)
	if err != nil {
		return nil, backend.Errorf(backend.NotFound, "source volume %s does not exist: %v", source, err)
	}
	id := volid.Snapshot{Volume: source, SnapHash: volid.Hash(name)}
	snap := snapshotName(id.SnapHash)
	if got, err := c.snapshot(s, id, ref, -1); err == nil {
		return got, nil
	} else if !backend.IsNotFound(err) {
		return nil, err
	}
	info, err := c.info(s, ref)
	if err != nil {
		if backend.IsNotFound(err) {
			return nil, backend.Errorf(backend.NotFound, "source volume %s does not exist", source)
		}
		return nil, err
	}
	// Snapshot names are per subvolume in Ceph but per tenant here: the same CSI name on
	// another volume is a different snapshot.
	var subs []string
	if err := s.do("list subvolumes of "+ref.fs+":"+ref.group, func() (err error) {
		subs, err = s.fsa.ListSubVolumes(ref.fs, ref.group)
		return err
	}); err != nil {
		return nil, err
	}
	for _, other := range subs {
		if other == ref.sub {
			continue
		}
		if _, ok := hashOf(subvolumePrefix, other); !ok {
			continue
		}
		var snaps []string
		err := s.do("list snapshots of "+other, func() (err error) {
			snaps, err = s.fsa.ListSubVolumeSnapshots(ref.fs, ref.group, other)
			return err
		})
		if err != nil && !backend.IsNotFound(err) {
			return nil, err
		}
		for _, sn := range snaps {
			if sn == snap {
				return nil, backend.Errorf(backend.AlreadyExists, "snapshot %q already exists on another volume of tenant %q (subvolume %s)", name, source.Tenant, other)
			}
		}
	}
	if err := s.do("snapshot "+ref.String(), func() error {
		return s.fsa.CreateSubVolumeSnapshot(ref.fs, ref.group, ref.sub, snap)
	}); err != nil {
		return nil, err
	}
	return c.snapshot(s, id, ref, quotaBytes(info))
}

// snapshot reports one snapshot; size < 0 reads it from the source volume's quota.
func (c *Controller) snapshot(s *session, id volid.Snapshot, ref volumeRef, size int64) (*backend.Snapshot, error) {
	var info *admin.SubVolumeSnapshotInfo
	if err := s.do("get snapshot "+ref.String()+"@"+snapshotName(id.SnapHash), func() (err error) {
		info, err = s.fsa.SubVolumeSnapshotInfo(ref.fs, ref.group, ref.sub, snapshotName(id.SnapHash))
		return err
	}); err != nil {
		return nil, err
	}
	if size < 0 {
		size = 0
		// A deleted source (snapshot-retained) has no quota any more; the size is unknown.
		if vi, err := c.info(s, ref); err == nil {
			size = quotaBytes(vi)
		}
	}
	return &backend.Snapshot{ID: id, SizeBytes: size, CreatedAt: info.CreatedAt.Time, Ready: true}, nil
}

func (c *Controller) DeleteSnapshot(ctx context.Context, id volid.Snapshot, secrets map[string]string) error {
	if isDirObject(id.Object) {
		return nil // never made (noDirSnapshots): gone
	}
	s, err := c.session(ctx, secrets)
	if err != nil {
		return err
	}
	ref, err := c.ref(s, id.Volume)
	if backend.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	err = s.do("delete snapshot "+ref.String()+"@"+snapshotName(id.SnapHash), func() error {
		return s.fsa.RemoveSubVolumeSnapshot(ref.fs, ref.group, ref.sub, snapshotName(id.SnapHash))
	})
	switch {
	case backend.IsNotFound(err):
		return nil
	case backend.CodeOf(err) == backend.Pending:
		return backend.Errorf(backend.Pending, "snapshot %s has clones in progress; DeleteSnapshot is retried once they complete (%v)", id, err)
	}
	return err
}

func (c *Controller) GetSnapshot(ctx context.Context, id volid.Snapshot) (*backend.Snapshot, error) {
	if isDirObject(id.Object) {
		return nil, backend.Errorf(backend.NotFound, "snapshot %s does not exist: %v", id, noDirSnapshots(id.Volume))
	}
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	ref, err := c.ref(s, id.Volume)
	if err != nil {
		return nil, err
	}
	return c.snapshot(s, id, ref, -1)
}

func (c *Controller) ListSnapshots(ctx context.Context, source *volid.Volume) ([]*backend.Snapshot, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if source != nil && isDirObject(source.Object) {
		return nil, nil // an adopted plain directory has none (noDirSnapshots)
	}
	if source != nil {
		ref, err := c.ref(s, *source)
		if err != nil {
			return nil, err
		}
		return c.snapshotsOf(s, *source, ref)
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	subs, err := c.subvolumesOf(s, "")
	if err != nil {
		return nil, err
	}
	var out []*backend.Snapshot
	for _, sub := range subs {
		snaps, err := c.snapshotsOf(s, sub.id, sub.ref)
		if err != nil {
			return nil, err
		}
		out = append(out, snaps...)
	}
	return out, nil
}

func (c *Controller) snapshotsOf(s *session, vol volid.Volume, ref volumeRef) ([]*backend.Snapshot, error) {
	var names []string
	err := s.do("list snapshots of "+ref.String(), func() (err error) {
		names, err = s.fsa.ListSubVolumeSnapshots(ref.fs, ref.group, ref.sub)
		return err
	})
	if backend.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	size := int64(0)
	if vi, err := c.info(s, ref); err == nil {
		size = quotaBytes(vi)
	}
	var out []*backend.Snapshot
	for _, n := range names {
		h, ok := hashOf(snapshotPrefix, n)
		if !ok {
			continue
		}
		snap, err := c.snapshot(s, volid.Snapshot{Volume: vol, SnapHash: h}, ref, size)
		if backend.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, snap)
	}
	return out, nil
}

// SnapshotRoot is where a snapshot's copy of a volume's tree is read: a subvolume (v2) is
// snapshotted at its base directory, above the data directory rootPath names.
func SnapshotRoot(rootPath string, id volid.Snapshot) string {
	return path.Join(path.Dir(rootPath), ".snap", snapshotName(id.SnapHash), path.Base(rootPath))
}
