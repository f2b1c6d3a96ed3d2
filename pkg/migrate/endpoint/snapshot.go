package endpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	if env.DryRun {
		return nil
	}
	if err := env.deleteSnapshot(ctx, ctrl, env.snapshotID(vol)); err != nil {
		return fmt.Errorf("remove snapshot %s of volume %s left by an earlier run: %w", env.SnapshotName(vol), vol, err)
	}
	return nil
}

// snapshotRemovalWait bounds how long a run waits for its snapshot to go: an RBD snapshot
// read through a clone answers Pending until the Ceph mgr has purged that clone.
const snapshotRemovalWait = 3 * time.Minute

// deleteSnapshot removes a snapshot of the run, retrying while the backend answers Pending
// as a CO would, so that a finished run leaves nothing on its source.
func (env *Env) deleteSnapshot(ctx context.Context, ctrl backend.Controller, id volid.Snapshot) error {
	pause := env.snapshotRetry
	if pause == 0 {
		pause = time.Second
	}
	deadline := time.Now().Add(snapshotRemovalWait)
	for {
		err := ctrl.DeleteSnapshot(ctx, id, nil)
		if backend.CodeOf(err) != backend.Pending || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
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
		if err := env.deleteSnapshot(context.Background(), ctrl, snap.ID); err != nil {
			return fmt.Errorf("remove snapshot %s of volume %s (the next run removes it): %w", name, vol.ID, err)
		}
		return nil
	}
	inner, err := open(snap)
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	// The snapshot goes last: after whatever reads it is closed.
	return &Side{FS: inner.FS, Verify: inner.Verify, What: inner.What, Snapshot: name, Renumbers: inner.Renumbers,
		closers: append([]func() error{drop}, inner.closers...)}, nil
}

// openRBDSource reads an RBD source from a snapshot when asked. The node code stages
// images, not snapshots: the snapshot is cloned to a volume of the run's own (the driver's
// clone path), staged read-write so that ext4 replays the journal of a filesystem
// snapshotted while mounted (a read-only stage mounts with noload and would show it as of
// its last checkpoint), and only read. The source image is never staged.
func (env *Env) openRBDSource(ctx context.Context, ctrl backend.Controller, vol *backend.Volume, role Role) (*Side, error) {
	if role != Source {
		return env.openRBD(ctx, vol, role)
	}
	name := env.SnapshotName(vol.ID)
	if err := env.dropLeftoverClone(ctx, ctrl, vol.ID.Tenant, name); err != nil {
		return nil, err
	}
	if !env.Snapshot {
		if err := env.dropLeftoverSnapshot(ctx, ctrl, vol.ID); err != nil {
			return nil, err
		}
		return env.openRBD(ctx, vol, role)
	}
	return env.fromSnapshot(ctx, ctrl, vol, func(snap *backend.Snapshot) (*Side, error) {
		clone, err := ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: name, Tenant: vol.ID.Tenant,
			RequiredBytes: vol.CapacityBytes, SourceSnapshot: &snap.ID})
		if err != nil {
			return nil, fmt.Errorf("clone snapshot %s of volume %s to read it: %w", name, vol.ID, err)
		}
		drop := func() error {
			if err := ctrl.DeleteVolume(context.Background(), clone.ID, nil); err != nil {
				return fmt.Errorf("remove volume %s (the clone of snapshot %s; the next run removes it): %w", clone.ID, name, err)
			}
			return nil
		}
		inner, err := env.stageRBD(ctx, clone, "snapshot", false, false)
		if err != nil {
			return nil, errors.Join(err, drop())
		}
		return &Side{FS: inner.FS, What: fmt.Sprintf("RBD volume %s (snapshot %s, %s)", vol.ID, name, inner.What),
			closers: append([]func() error{drop}, inner.closers...)}, nil
	})
}

// dropLeftoverClone removes the clone of a snapshot a killed run left (its request name is
// the snapshot's), before the snapshot it was made from.
func (env *Env) dropLeftoverClone(ctx context.Context, ctrl backend.Controller, tenant, name string) error {
	if env.DryRun {
		return nil
	}
	vols, err := ctrl.ListVolumes(ctx, tenant)
	if err != nil {
		return fmt.Errorf("look for a clone an earlier run left: %w", err)
	}
	for _, v := range vols {
		if v.RequestName == name || v.ID.Hash == volid.Hash(name) {
			if err := ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
				return fmt.Errorf("remove volume %s an earlier run left (clone of snapshot %s): %w", v.ID, name, err)
			}
		}
	}
	return nil
}
