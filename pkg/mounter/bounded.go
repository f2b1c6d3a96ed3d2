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
	key := filepath.Clean(path)
	stuckCalls.Lock()
	busy := stuckCalls.n[key] > 0
	stuckCalls.Unlock()
	if busy {
		return fmt.Errorf("%s: an earlier call on it is still blocked: %w", path, ErrNotResponding)
	}
	done := make(chan error, 1)
	var mu sync.Mutex
	late := false
	go func() {
		err := fn()
		mu.Lock()
		defer mu.Unlock()
		if late {
			stuckCalls.Lock()
			if stuckCalls.n[key]--; stuckCalls.n[key] <= 0 {
				delete(stuckCalls.n, key)
			}
			stuckCalls.Unlock()
		}
		done <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why error
	select {
	case err := <-done:
		return err
	case <-timer.C:
		why = fmt.Errorf("%s: no answer within %v: %w", path, timeout, ErrNotResponding)
	case <-ctx.Done():
		why = fmt.Errorf("%s: %v before it answered: %w", path, ctx.Err(), ErrNotResponding)
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case err := <-done: // answered just now
		return err
	default:
	}
	late = true
	stuckCalls.Lock()
	stuckCalls.n[key]++
	stuckCalls.Unlock()
	return why
}

// Stat is stat(2) on a path that may sit on a dead mount.
func Stat(ctx context.Context, path string, timeout time.Duration) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := OnMount(ctx, path, timeout, func() error {
		var s unix.Stat_t
		err := unix.Stat(path, &s)
		if err == nil {
			st = s
		}
		return err
	})
	return st, err
}

// Statfs is statfs(2) on a path that may sit on a dead mount.
func Statfs(ctx context.Context, path string, timeout time.Duration) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := OnMount(ctx, path, timeout, func() error {
		var s unix.Statfs_t
		err := unix.Statfs(path, &s)
		if err == nil {
			st = s
		}
		return err
	})
	return st, err
}

// Forced and lazy unmounts, replaced in tests.
var (
	forceUnmount = func(target string) error { return unix.Unmount(target, unix.MNT_FORCE) }
	lazyUnmount  = func(target string) error { return unix.Unmount(target, unix.MNT_DETACH) }
)

// UnmountDead unmounts target, whose server may be dead: a normal unmount through m for at
// most timeout, then a forced one (NFS aborts its requests, FUSE its connection), then a
// lazy one, which detaches the mount at once and cannot block.
func UnmountDead(ctx context.Context, m mount.Interface, target string, timeout time.Duration) error {
	err := OnMount(ctx, "umount "+target, timeout, func() error { return m.Unmount(target) })
	if err == nil || !errors.Is(err, ErrNotResponding) {
		return err
	}
	ferr := OnMount(ctx, "umount -f "+target, timeout, func() error { return forceUnmount(target) })
	if ferr == nil || errors.Is(ferr, unix.EINVAL) {
		return nil
	}
	if lerr := lazyUnmount(target); lerr != nil && !errors.Is(lerr, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %v; forced: %v; lazy: %w", target, err, ferr, lerr)
	}
	return nil
}
