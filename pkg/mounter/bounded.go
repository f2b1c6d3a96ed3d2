package mounter

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// DefaultMountCallTimeout bounds one syscall on a mount whose server may be dead.
const DefaultMountCallTimeout = 10 * time.Second

// ErrNotResponding says a call on a mount did not return in time: the server behind it (an
// NFS server, a FUSE daemon, a Ceph MDS) does not answer. The call itself goes on.
var ErrNotResponding = errors.New("not responding")

// stuckCalls counts, per path, the calls still running past their deadline, so that a dead
// mount costs one stuck goroutine per path, not one per request.
var stuckCalls = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// OnMount runs fn, a call that touches path, for at most timeout. Past the deadline it
// returns ErrNotResponding and leaves fn to finish on its own: a syscall blocked on a dead
// server cannot be cancelled, and the caller must not hold a lock across it. While a call
// on path is stuck, further calls on it answer ErrNotResponding at once.
func OnMount(ctx context.Context, path string, timeout time.Duration, fn func() error) error {
	_, err := Bounded(ctx, path, timeout, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// Bounded is OnMount for a call with a result, which only a call that answered in time
// hands back.
func Bounded[T any](ctx context.Context, path string, timeout time.Duration, fn func() (T, error)) (T, error) {
	type answer struct {
		v   T
		err error
	}
	var zero T
	key := filepath.Clean(path)
	stuckCalls.Lock()
	busy := stuckCalls.n[key] > 0
	stuckCalls.Unlock()
	if busy {
		return zero, fmt.Errorf("%s: an earlier call on it is still blocked: %w", path, ErrNotResponding)
	}
	done := make(chan answer, 1)
	var mu sync.Mutex
	late := false
	go func() {
		v, err := fn()
		mu.Lock()
		defer mu.Unlock()
		if late {
			stuckCalls.Lock()
			if stuckCalls.n[key]--; stuckCalls.n[key] <= 0 {
				delete(stuckCalls.n, key)
			}
			stuckCalls.Unlock()
		}
		done <- answer{v, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why error
	select {
	case a := <-done:
		return a.v, a.err
	case <-timer.C:
		why = fmt.Errorf("%s: no answer within %v: %w", path, timeout, ErrNotResponding)
	case <-ctx.Done():
		why = fmt.Errorf("%s: %v before it answered: %w", path, ctx.Err(), ErrNotResponding)
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case a := <-done: // answered just now
		return a.v, a.err
	default:
	}
	late = true
	stuckCalls.Lock()
	stuckCalls.n[key]++
	stuckCalls.Unlock()
	return zero, why
}

// Stat is stat(2) on a path that may sit on a dead mount.
func Stat(ctx context.Context, path string, timeout time.Duration) (unix.Stat_t, error) {
	return Bounded(ctx, path, timeout, func() (unix.Stat_t, error) {
		var st unix.Stat_t
		err := unix.Stat(path, &st)
		return st, err
	})
}

// Statfs is statfs(2) on a path that may sit on a dead mount.
func Statfs(ctx context.Context, path string, timeout time.Duration) (unix.Statfs_t, error) {
	return Bounded(ctx, path, timeout, func() (unix.Statfs_t, error) {
		var st unix.Statfs_t
		err := unix.Statfs(path, &st)
		return st, err
	})
}

// Forced and lazy unmounts, replaced in tests.
var (
	forceUnmount = func(target string) error { return unix.Unmount(target, unix.MNT_FORCE) }
	lazyUnmount  = func(target string) error { return unix.Unmount(target, unix.MNT_DETACH) }
)

// UnmountDead unmounts target, whose server may be dead: a normal unmount through m for at
// most timeout, then a forced one (NFS aborts its requests, FUSE its connection), then a
// lazy one, which detaches the mount at once.
func UnmountDead(ctx context.Context, m mount.Interface, target string, timeout time.Duration) error {
	_, err := unmountDead(ctx, m, target, timeout)
	return err
}

// unmountDead is UnmountDead that also reports whether the normal unmount did not answer:
// the storage behind target is not responding.
func unmountDead(ctx context.Context, m mount.Interface, target string, timeout time.Duration) (stuck bool, err error) {
	err = OnMount(ctx, "umount "+target, timeout, func() error { return m.Unmount(target) })
	if err == nil || !errors.Is(err, ErrNotResponding) {
		return false, err
	}
	if ferr := ForceUnmount(ctx, target, timeout); ferr != nil {
		return true, fmt.Errorf("unmount %s: %v; %w", target, err, ferr)
	}
	return true, nil
}

// ForceUnmount takes target away without waiting for its server: a forced unmount for at
// most timeout, then a lazy one. Both are bounded too: the last reference to a filesystem
// is dropped in the caller's thread, and a filesystem that flushes on its way out (ext4
// over a dead device) blocks there.
func ForceUnmount(ctx context.Context, target string, timeout time.Duration) error {
	force, lazy := forceUnmount, lazyUnmount
	ferr := OnMount(ctx, "umount -f "+target, timeout, func() error { return force(target) })
	if ferr == nil || errors.Is(ferr, unix.EINVAL) || errors.Is(ferr, unix.ENOENT) {
		return nil
	}
	lerr := OnMount(ctx, "umount -l "+target, timeout, func() error { return lazy(target) })
	if lerr != nil && !errors.Is(lerr, unix.EINVAL) && !errors.Is(lerr, unix.ENOENT) && !errors.Is(lerr, ErrNotResponding) {
		return fmt.Errorf("forced: %v; lazy: %w", ferr, lerr)
	}
	// A lazy unmount that did not answer has detached the mount already; what blocks is
	// the filesystem's flush, which no longer holds the mount point.
	return nil
}

// MountedAt reports whether something is mounted at path in m's mount table. The table is
// read from /proc, never by touching path, so a dead mount cannot block it.
func MountedAt(m mount.Interface, path string) (bool, error) {
	mps, err := m.List()
	if err != nil {
		return false, fmt.Errorf("list mounts: %w", err)
	}
	clean := filepath.Clean(path)
	for _, mp := range mps {
		if filepath.Clean(mp.Path) == clean {
			return true, nil
		}
	}
	return false, nil
}

// UnmountEvery unmounts target until nothing is mounted there (a retried stage can mount
// over it twice), each time as UnmountDead does. stuck reports that a normal unmount did
// not answer: the storage behind target is not responding.
func UnmountEvery(ctx context.Context, m mount.Interface, target string, timeout time.Duration) (stuck bool, err error) {
	for i := 0; i < 8; i++ {
		mounted, err := MountedAt(m, target)
		if err != nil || !mounted {
			return stuck, err
		}
		s, err := unmountDead(ctx, m, target, timeout)
		stuck = stuck || s
		if err != nil {
			return stuck, err
		}
	}
	return stuck, fmt.Errorf("unmount %s: still mounted after 8 unmounts", target)
}
