package rbd

import (
	"context"
	"strconv"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

func (c *Controller) CreateSnapshot(ctx context.Context, source volid.Volume, name string, params, secrets map[string]string) (*backend.Snapshot, error) {
	if source.Backend != c.name {
		return nil, backend.Errorf(backend.NotFound, "source volume %s is not on backend %q", source, c.name)
	}
	hash := volid.Hash(name)
	sn := snapName(hash)
	var snap *backend.Snapshot
	err := c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, pool, err := openVolumePool(conn, source)
		if err != nil {
			return asNotFound(err, source)
		}
		defer io.Destroy()
		// Read-only first: a retry finds its snapshot without a watch on the image.
		ro, err := librbd.OpenImageReadOnly(io, imageName(source.Hash), librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open source image"), source)
		}
		id := volid.Snapshot{Volume: source, SnapHash: hash}
		s, err := snapshotOf(ro, id)
		ro.Close()
		if err == nil {
			snap = s
			return nil
		} else if !backend.IsNotFound(err) {
			return err
		}
		// The same name on another volume of the tenant is a different snapshot.
		err = c.eachImage(conn, source.Tenant, func(io *rados.IOContext, p, ns, h string) error {
			if p != pool || h == source.Hash {
				return nil
			}
			other, err := librbd.OpenImageReadOnly(io, imageName(h), librbd.NoSnapshot)
			if err != nil {
				return nil
			}
			defer other.Close()
			snaps, err := other.GetSnapshotNames()
			if err != nil {
				return classify(err, "list snapshots of "+imageName(h))
			}
			for _, s := range snaps {
				if s.Name == sn {
					return backend.Errorf(backend.AlreadyExists, "snapshot %q already exists on another volume (image %s/%s/%s)", name, p, ns, imageName(h))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := late(ctx, "snapshot "+sn); err != nil {
			return err
		}
		// Protected now so that clones work with clone format 1 too.
		if err := ensureSnap(io, imageName(source.Hash), sn); err != nil {
			return asNotFound(err, source)
		}
		img, err := librbd.OpenImageReadOnly(io, imageName(source.Hash), librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open source image"), source)
		}
		defer img.Close()
		snap, err = snapshotOf(img, id)
		return err
	})
	return snap, err
}

// snapshotOf describes snapshot id on its open image; NotFound when absent.
func snapshotOf(img *librbd.Image, id volid.Snapshot) (*backend.Snapshot, error) {
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return nil, classify(err, "list snapshots of "+img.GetName())
	}
	want := snapName(id.SnapHash)
	for _, s := range snaps {
		if s.Name != want {
			continue
		}
		ts, err := img.GetSnapTimestamp(s.Id)
		if err != nil {
			return nil, classify(err, "timestamp of snapshot "+want)
		}
		return &backend.Snapshot{ID: id, SizeBytes: int64(s.Size), CreatedAt: time.Unix(ts.Sec, ts.Nsec).UTC(), Ready: true}, nil
	}
	return nil, backend.Errorf(backend.NotFound, "snapshot %s does not exist", id)
}

// DeleteSnapshot has the Ceph mgr flatten the snapshot's clones first (Pending until it
// has), so volumes restored from it stay.
func (c *Controller) DeleteSnapshot(ctx context.Context, id volid.Snapshot, secrets map[string]string) error {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "snapshot %s is not on backend %q", id, c.name)
	}
	return c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, _, err := openVolumePool(conn, id.Volume)
		if err != nil {
			if backend.IsNotFound(err) {
				return nil
			}
			return err
		}
		defer io.Destroy()
		img, err := librbd.OpenImage(io, imageName(id.Hash), librbd.NoSnapshot)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return classify(err, "open image "+imageName(id.Hash))
		}
		defer img.Close()
		if err := late(ctx, "remove snapshot "+snapName(id.SnapHash)); err != nil {
			return err
		}
		return removeSnap(ctx, c.taskWait, conn, img, snapName(id.SnapHash))
	})
}

func (c *Controller) GetSnapshot(ctx context.Context, id volid.Snapshot) (*backend.Snapshot, error) {
	if id.Backend != c.name {
		return nil, backend.Errorf(backend.NotFound, "snapshot %s is not on backend %q", id, c.name)
	}
	var snap *backend.Snapshot
	err := c.run(ctx, nil, func(conn *rados.Conn) error {
		io, _, err := openVolumePool(conn, id.Volume)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		img, err := librbd.OpenImageReadOnly(io, imageName(id.Hash), librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open image"), id)
		}
		defer img.Close()
		snap, err = snapshotOf(img, id)
		return err
	})
	return snap, err
}

func (c *Controller) ListSnapshots(ctx context.Context, source *volid.Volume) ([]*backend.Snapshot, error) {
	var out []*backend.Snapshot
	list := func(io *rados.IOContext, vol volid.Volume) error {
		img, err := librbd.OpenImageReadOnly(io, imageName(vol.Hash), librbd.NoSnapshot)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return classify(err, "open image "+imageName(vol.Hash))
		}
		defer img.Close()
		snaps, err := img.GetSnapshotNames()
		if err != nil {
			return classify(err, "list snapshots of "+img.GetName())
		}
		for _, s := range snaps {
			h := snapHashOf(s.Name)
			if h == "" {
				continue
			}
			snap, err := snapshotOf(img, volid.Snapshot{Volume: vol, SnapHash: h})
			if err != nil {
				return err
			}
			out = append(out, snap)
		}
		return nil
	}
	err := c.run(ctx, nil, func(conn *rados.Conn) error {
		if source != nil {
			if source.Backend != c.name {
				return nil
			}
			io, _, err := openVolumePool(conn, *source)
			if err != nil {
				if backend.IsNotFound(err) {
					return nil
				}
				return err
			}
			defer io.Destroy()
			return list(io, *source)
		}
		return c.eachImage(conn, "", func(io *rados.IOContext, pool, ns, hash string) error {
			vol := volid.Volume{Backend: c.name, Tenant: ns, Location: strconv.FormatInt(io.GetPoolID(), 10), Hash: hash}
			st, err := readImage(io, imageName(hash), false)
			if err != nil || !st.hasRecord || st.record.Backend != c.name {
				return nil
			}
			return list(io, vol)
		})
	})
	return out, err
}
