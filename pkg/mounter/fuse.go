package mounter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// FUSETeardown takes down a FUSE mount (ceph-fuse, rbd-fuse) and the daemon serving it,
// whatever the state of the storage behind them: every unmount is bounded, and a daemon
// that cannot flush to a dead cluster is stopped instead of waited for.
type FUSETeardown struct {
	Procs Procs
	// Command is the daemon's command name (ceph-fuse, rbd-fuse).
	Command string
	// CallTimeout bounds each unmount.
	CallTimeout time.Duration
	// ExitWait is how long a daemon may take to flush and exit after a clean unmount.
	ExitWait time.Duration
}

// Unmount unmounts mountpoint and stops the daemons serving it. dead says the caller knows
// the storage does not answer (an unmount above this mount hung): the FUSE connection is
// aborted (forced unmount) at once and the daemon is not given time for a flush that
// cannot finish. It succeeds only when nothing is mounted at mountpoint and no daemon
// serves it any more.
func (f FUSETeardown) Unmount(ctx context.Context, m mount.Interface, mountpoint string, dead bool) error {
	// Found by what they serve, before the unmount; never by a PID from a record.
	daemons := f.Procs.Serving(f.Command, mountpoint)
	mounted, err := MountedAt(m, mountpoint)
	if err != nil {
		return err
	}
	// A daemon without its mount (an earlier teardown cut short) serves nothing; a mount
	// whose connection is gone (ENOTCONN) or that does not answer has nothing to flush.
	dead = dead || (!mounted && len(daemons) > 0) || (mounted && !answers(ctx, mountpoint, f.CallTimeout))
	switch {
	case mounted && dead:
		err = f.abort(ctx, m, mountpoint)
	case mounted:
		// A normal unmount that does not answer also shows the storage is gone.
		dead, err = UnmountEvery(ctx, m, mountpoint, f.CallTimeout)
	}
	if err != nil {
		return fmt.Errorf("unmount %s at %s: %w", f.Command, mountpoint, err)
	}
	grace := f.ExitWait
	if dead {
		grace = 0
	}
	if err := f.Procs.StopAfterUnmount(ctx, daemons, f.Command, mountpoint, grace); err != nil {
		return err
	}
	return f.gone(m, mountpoint)
}

// answers probes a FUSE mount's root, replaced in tests: false when its daemon is gone or
// does not answer within timeout.
var answers = func(ctx context.Context, mountpoint string, timeout time.Duration) bool {
	_, err := Stat(ctx, mountpoint, timeout)
	return !errors.Is(err, ErrNotResponding) && !errors.Is(err, unix.ENOTCONN)
}

// abort force-unmounts mountpoint until nothing is mounted there: for FUSE a forced unmount
// aborts the connection, which fails every request the daemon will never answer.
func (f FUSETeardown) abort(ctx context.Context, m mount.Interface, mountpoint string) error {
	for i := 0; i < 8; i++ {
		if mounted, err := MountedAt(m, mountpoint); err != nil || !mounted {
			return err
		}
		if err := ForceUnmount(ctx, mountpoint, f.CallTimeout); err != nil {
			return err
		}
	}
	return fmt.Errorf("still mounted after 8 forced unmounts")
}

// gone checks that nothing of the mount is left: no mount at mountpoint, no daemon for it.
func (f FUSETeardown) gone(m mount.Interface, mountpoint string) error {
	if mounted, err := MountedAt(m, mountpoint); err != nil || mounted {
		return fmt.Errorf("%s at %s is still mounted after its unmount (%v)", f.Command, mountpoint, err)
	}
	if left := f.Procs.Serving(f.Command, mountpoint); len(left) > 0 {
		return fmt.Errorf("%s (pid %d) still serves %s after its unmount", f.Command, left[0].PID, mountpoint)
	}
	return nil
}
