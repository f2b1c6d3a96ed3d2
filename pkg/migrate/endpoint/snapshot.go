package endpoint

import (
	"context"
	"errors"
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// SnapshotPrefix begins the CSI name of every snapshot a migration takes of its source.
const SnapshotPrefix = "shipholdctl-migrate-"

// SnapshotName is the snapshot a migration (its session) takes of a source volume: the same
// name on every run, so a run finds and removes what a killed one left.
func (env *Env) SnapshotName(vol volid.Volume) string {
	return SnapshotPrefix + volid.Hash(env.Session+" "+vol.String())
}

func (env *Env) snapshotID(vol volid.Volume) volid.Snapshot {
	return volid.Snapshot{Volume: vol, SnapHash: volid.Hash(env.SnapshotName(vol))}
}

// dropLeftoverSnapshot removes the snapshot a killed run of this migration left behind.
func (env *Env) dropLeftoverSnapshot(ctx context.Context, ctrl backend.Controller, vol volid.Volume) error {
	if err := ctrl.DeleteSnapshot(ctx, env.snapshotID(vol), nil); err != nil {
		return fmt.Errorf("remove snapshot %s of volume %s left by an earlier run: %w", env.SnapshotName(vol), vol, err)
	}
	return nil
}

// fromSnapshot opens a source through a fresh snapshot of vol, taken with the backend's own
// snapshot call (the driver's record of it). open reads the snapshot; the snapshot is
// removed when the side closes, or at once when opening fails.
func (env *Env) fromSnapshot(ctx context.Context, ctrl backend.Controller, vol *backend.Volume,
	open func(*backend.Snapshot) (*Side, error)) (*Side, error) {
	if err := env.dropLeftoverSnapshot(ctx, ctrl, vol.ID); err != nil {
		return nil, err
	}
	name := env.SnapshotName(vol.ID)
	snap, err := ctrl.CreateSnapshot(ctx, vol.ID, name, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("snapshot volume %s for a consistent read (or --snapshot=never): %w", vol.ID, err)
	}
	drop := func() error {
		if err := ctrl.DeleteSnapshot(context.Background(), snap.ID, nil); err != nil {
			return fmt.Errorf("remove snapshot %s of volume %s (the next run removes it): %w", name, vol.ID, err)
		}
		return nil
	}
	inner, err := open(snap)
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	// The snapshot goes last: after whatever reads it is closed.
	return &Side{FS: inner.FS, Verify: inner.Verify, What: inner.What, Snapshot: name,
		closers: append([]func() error{drop}, inner.closers...)}, nil
}
