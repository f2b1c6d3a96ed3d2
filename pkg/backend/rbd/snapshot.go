package rbd

import (
	"context"
	"strconv"

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
	err := c.storage.Do(ctx, secrets, func(conn connection) error {
		io, pool, err := openVolumePool(conn, source)
		if err != nil {
			return asNotFound(err, source)
		}
		defer io.Destroy()
		// Read-only first: a retry finds its snapshot without a watch on the image.
		id := volid.Snapshot{Volume: source, SnapHash: hash}
		err = inImage(io, volumeImage(source), func(img image) (err error) {
			if snap, err = snapshotOf(img, id); backend.IsNotFound(err) {
				return nil
			}
			return err
		})
		if err != nil || snap != nil {
			return asNotFound(err, source)
		}
		// The same name on another volume of the tenant is a different snapshot.
		err = c.eachImage(conn, source.Tenant, func(io ioctx, p, ns, h string) error {
			if p != pool || h == source.Hash {
				return nil
			}
			other, err := io.OpenImage(imageName(h), false)
			if err != nil {
				return nil
			}
			defer other.Close()
			snaps, err := other.Snapshots()
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
		if err := ensureSnap(io, volumeImage(source), sn); err != nil {
			return asNotFound(err, source)
		}
		return asNotFound(inImage(io, volumeImage(source), func(img image) (err error) {
			snap, err = snapshotOf(img, id)
			return err
		}), source)
	})
	return snap, err
}

// snapshotOf describes snapshot id on its open image; NotFound when absent.
func snapshotOf(img image, id volid.Snapshot) (*backend.Snapshot, error) {
	snaps, err := img.Snapshots()
	if err != nil {
		return nil, classify(err, "list snapshots of "+img.Name())
	}
	want := snapName(id.SnapHash)
	for _, s := range snaps {
		if s.Name != want {
			continue
		}
		ts, err := img.SnapTime(s.Id)
		if err != nil {
			return nil, classify(err, "timestamp of snapshot "+want)
		}
		return &backend.Snapshot{ID: id, SizeBytes: int64(s.Size), CreatedAt: ts, Ready: true}, nil
	}
	return nil, backend.Errorf(backend.NotFound, "snapshot %s does not exist", id)
}

// DeleteSnapshot has the Ceph mgr flatten the snapshot's clones first (Pending until it
// has), so volumes restored from it stay.
func (c *Controller) DeleteSnapshot(ctx context.Context, id volid.Snapshot, secrets map[string]string) error {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "snapshot %s is not on backend %q", id, c.name)
	}
	return c.storage.Do(ctx, secrets, func(conn connection) error {
		io, _, err := openVolumePool(conn, id.Volume)
		if err != nil {
			if backend.IsNotFound(err) {
				return nil
			}
			return err
		}
		defer io.Destroy()
		img, err := io.OpenImage(volumeImage(id.Volume), true)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return classify(err, "open image "+volumeImage(id.Volume))
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
	err := c.storage.Do(ctx, nil, func(conn connection) error {
		io, _, err := openVolumePool(conn, id.Volume)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		return asNotFound(inImage(io, volumeImage(id.Volume), func(img image) (err error) {
			snap, err = snapshotOf(img, id)
			return err
		}), id)
	})
	return snap, err
}

func (c *Controller) ListSnapshots(ctx context.Context, source *volid.Volume) ([]*backend.Snapshot, error) {
	var out []*backend.Snapshot
	list := func(io ioctx, vol volid.Volume) error {
		img, err := io.OpenImage(volumeImage(vol), false)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return classify(err, "open image "+volumeImage(vol))
		}
		defer img.Close()
		snaps, err := img.Snapshots()
		if err != nil {
			return classify(err, "list snapshots of "+img.Name())
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
	err := c.storage.Do(ctx, nil, func(conn connection) error {
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
		return c.eachImage(conn, "", func(io ioctx, pool, ns, hash string) error {
			vol := volid.Volume{Backend: c.name, Tenant: ns, Location: strconv.FormatInt(io.ID(), 10), Hash: hash}
			st, err := readImage(io, imageName(hash), false)
			if err != nil || !st.hasRecord || st.record.Backend != c.name {
				return nil
			}
			return list(io, vol)
		})
	})
	return out, err
}
