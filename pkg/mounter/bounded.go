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
// lazy one, which detaches the mount at once and cannot block.
func UnmountDead(ctx context.Context, m mount.Interface, target string, timeout time.Duration) error {
	err := OnMount(ctx, "umount "+target, timeout, func() error { return m.Unmount(target) })
	if err == nil || !errors.Is(err, ErrNotResponding) {
		return err
	}
	force := forceUnmount
	ferr := OnMount(ctx, "umount -f "+target, timeout, func() error { return force(target) })
	if ferr == nil || errors.Is(ferr, unix.EINVAL) {
		return nil
	}
	if lerr := lazyUnmount(target); lerr != nil && !errors.Is(lerr, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %v; forced: %v; lazy: %w", target, err, ferr, lerr)
	}
	return nil
}
