package rbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/mounter"
)

// fuseAttacher exposes the image as a file with rbd-fuse (librbd in user space) and puts a
// loop device on it: the strategy for nodes without the rbd and nbd kernel modules.
//
// rbd-fuse has no exclusive-lock option, so single-writer modes are not fenced on this
// strategy: a second node could map the image read-write after a forced detach.
type fuseAttacher struct {
	cluster ceph.Cluster
	m       *mounter.Mounter
	procs   mounter.Procs
	// sysRoot is /sys, where loop devices show their back-files.
	sysRoot string
	// sizeWait bounds the wait for rbd-fuse to show a grown image.
	sizeWait time.Duration
	// exitWait bounds the wait for rbd-fuse to exit after its unmount.
	exitWait time.Duration
}

const (
	fuseDirName = "rbd-fuse"
	fuseCommand = "rbd-fuse"
)

func (a *fuseAttacher) Attach(ctx context.Context, img imageSpec, dir string, cred ceph.Credentials, opts attachOptions) (attachment, error) {
	at := attachment{FuseMount: filepath.Join(dir, fuseDirName)}
	file := filepath.Join(at.FuseMount, img.Image)
	mounted, err := a.m.IsMounted(at.FuseMount)
	if err != nil {
		return at, err
	}
	if !mounted {
		if err := a.startFuse(ctx, img, dir, at.FuseMount, cred); err != nil {
			return at, err
		}
	}
	if ds := a.procs.Serving(fuseCommand, at.FuseMount); len(ds) > 0 {
		at.FusePID, at.FuseStart = ds[0].PID, ds[0].Start
	}
	if _, err := mounter.Stat(ctx, file, mounter.DefaultMountCallTimeout); err != nil {
		why := fmt.Errorf("rbd-fuse mounted %s but shows no %s: %w; check that the image exists and that cephx user %s may read it", at.FuseMount, img.Image, err, cred.UserID)
		// An rbd-fuse that cannot open its image (a key without caps on the image's
		// namespace) never answers the lookup: it goes now, or the staging path stays hung.
		fuse := mounter.FUSETeardown{Procs: a.procs, Command: fuseCommand, CallTimeout: mounter.DefaultMountCallTimeout, ExitWait: a.exitWait}
		if uerr := fuse.Unmount(ctx, a.m, at.FuseMount, errors.Is(err, mounter.ErrNotResponding)); uerr != nil {
			why = errors.Join(why, uerr)
		}
		return attachment{}, why
	}
	dev, err := a.m.LoopAttach(ctx, file, opts.ReadOnly)
	if err != nil {
		return at, err
	}
	at.Device = dev
	return at, nil
}

func (a *fuseAttacher) startFuse(ctx context.Context, img imageSpec, dir, mountpoint string, cred ceph.Credentials) error {
	if err := os.MkdirAll(mountpoint, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", mountpoint, err)
	}
	keyFile, cleanup, err := ceph.WriteKeyFile(dir, cred)
	if err != nil {
		return err
	}
	// rbd-fuse reads the key at start and keeps it; the file goes right after.
	defer cleanup()
	args := append([]string{mountpoint}, ceph.ConfArgs(a.cluster, cred.UserID, keyFile)...)
	args = append(args, "-p", img.Pool, "--namespace="+img.Namespace, "-r", img.Image)
	waited := backend.LongWait(ctx, "rbd-fuse start", "image", img.String(), "mountpoint", mountpoint)
	_, err = a.m.RunDaemon(ctx, fuseCommand, args...)
	if waited(err); err != nil {
		return fmt.Errorf("rbd-fuse %s: %w", img, err)
	}
	return nil
}

// Mappings lists the loop devices on this staging path's image file, then the rbd-fuse
// mount itself, which goes last (a loop device holds its file open).
func (a *fuseAttacher) Mappings(ctx context.Context, img imageSpec, dir string) ([]attachment, error) {
	fuseDir := filepath.Join(dir, fuseDirName)
	devs, err := a.m.LoopFindAll(ctx, filepath.Join(fuseDir, img.Image))
	if err != nil {
		return nil, err
	}
	var out []attachment
	for _, d := range devs {
		out = append(out, attachment{Device: d})
	}
	mounted, err := a.m.IsMounted(fuseDir)
	if err != nil {
		return nil, err
	}
	// Only an unmounted directory is looked at: a mounted one may not answer.
	if mounted {
		out = append(out, attachment{FuseMount: fuseDir})
	} else if _, err := os.Lstat(fuseDir); err == nil {
		out = append(out, attachment{FuseMount: fuseDir})
	}
	return out, nil
}

// Verify checks the chain: an rbd-fuse serving img at this staging path's mount, its image
// file, and a loop device whose back-file is that file.
func (a *fuseAttacher) Verify(ctx context.Context, img imageSpec, dir string, at attachment) error {
	fuseDir := filepath.Join(dir, fuseDirName)
	if filepath.Clean(at.FuseMount) != fuseDir || at.Device == "" {
		return fmt.Errorf("record names rbd-fuse mount %q and device %q, not this staging path's", at.FuseMount, at.Device)
	}
	if err := a.verifyDaemons(img, fuseDir); err != nil {
		return err
	}
	if mounted, err := a.m.IsMounted(fuseDir); err != nil || !mounted {
		return fmt.Errorf("rbd-fuse mount %s is gone (%v)", fuseDir, err)
	}
	file := filepath.Join(fuseDir, img.Image)
	// Bounded: an rbd-fuse whose OSDs do not answer blocks a stat, and the caller holds the
	// volume's lock.
	if _, err := mounter.Stat(ctx, file, mounter.DefaultMountCallTimeout); err != nil {
		return fmt.Errorf("rbd-fuse image file: %w", err)
	}
	back, err := os.ReadFile(filepath.Join(a.sysRoot, "block", filepath.Base(at.Device), "loop", "backing_file"))
	if err != nil {
		return fmt.Errorf("loop device %s has no back-file: %w", at.Device, err)
	}
	if got := strings.TrimSpace(string(back)); got != file {
		return fmt.Errorf("loop device %s is backed by %s now, not %s", at.Device, got, file)
	}
	return nil
}

// verifyDaemons checks that rbd-fuse serves mountpoint and that it serves img.
func (a *fuseAttacher) verifyDaemons(img imageSpec, mountpoint string) error {
	ds := a.procs.Serving(fuseCommand, mountpoint)
	if len(ds) == 0 {
		return fmt.Errorf("no rbd-fuse serves %s: it has exited", mountpoint)
	}
	for _, d := range ds {
		argv, ok := a.procs.Args(d)
		if !ok {
			continue
		}
		if argAfter(argv, "-p") != img.Pool || argAfter(argv, "--namespace") != img.Namespace || argAfter(argv, "-r") != img.Image {
			return fmt.Errorf("rbd-fuse (pid %d) at %s serves %s/%s/%s, not %s", d.PID, mountpoint,
				argAfter(argv, "-p"), argAfter(argv, "--namespace"), argAfter(argv, "-r"), img)
		}
	}
	return nil
}

// argAfter returns the value of flag in argv, given as "flag value" or "flag=value".
func argAfter(argv []string, flag string) string {
	if i := slices.Index(argv, flag); i >= 0 && i+1 < len(argv) {
		return argv[i+1]
	}
	for _, a := range argv {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func (a *fuseAttacher) Detach(ctx context.Context, at attachment) error {
	if at.Device != "" {
		err := a.m.LoopDetach(ctx, at.Device)
		if errors.Is(err, mounter.ErrNotResponding) {
			// Its I/O in flight waits on an rbd-fuse whose cluster is gone. The rbd-fuse
			// mount, always detached after its loop devices, fails that I/O and checks
			// that the device went.
			return nil
		}
		return err
	}
	if at.FuseMount == "" {
		return nil
	}
	// A loop device still on the image file after its detach is held by I/O that rbd-fuse
	// cannot finish, or by a filesystem flushing through it: the cluster does not answer.
	held, err := a.m.LoopsBelow(ctx, at.FuseMount)
	if err != nil {
		return err
	}
	fuse := mounter.FUSETeardown{Procs: a.procs, Command: fuseCommand, CallTimeout: mounter.DefaultMountCallTimeout, ExitWait: a.exitWait}
	if err := fuse.Unmount(ctx, a.m, at.FuseMount, len(held) > 0); err != nil {
		return err
	}
	if err := a.waitReleased(ctx, held); err != nil {
		return err
	}
	if err := os.Remove(at.FuseMount); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", at.FuseMount, err)
	}
	return nil
}

// waitReleased waits until the loop devices that were held on an rbd-fuse file are gone:
// once rbd-fuse is stopped their I/O fails, their holder lets go, and each device clears
// itself (losetup --detach marked it so).
func (a *fuseAttacher) waitReleased(ctx context.Context, held []mounter.Loop) error {
	deadline := time.Now().Add(mounter.DefaultMountCallTimeout)
	for _, l := range held {
		for a.loopStillOn(l) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("loop device %s on %s is still held after rbd-fuse stopped; something else uses it", l.Device, l.File)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// loopStillOn reports whether l's device is still bound to l's file. Once rbd-fuse's mount
// is detached the kernel names that file from the detached mount's root ("/<image>").
func (a *fuseAttacher) loopStillOn(l mounter.Loop) bool {
	back, err := os.ReadFile(filepath.Join(a.sysRoot, "block", filepath.Base(l.Device), "loop", "backing_file"))
	if err != nil {
		return false
	}
	got := strings.TrimSuffix(strings.TrimSpace(string(back)), " (deleted)")
	return got == l.File || got == "/"+filepath.Base(l.File)
}

// Refresh makes the loop device follow the image. rbd-fuse reports the image's current size on
// each getattr, but the kernel caches FUSE attributes for a second, so the new size is waited
// for before the loop device is told.
func (a *fuseAttacher) Refresh(ctx context.Context, at attachment, want int64) error {
	entries, err := os.ReadDir(at.FuseMount)
	if err != nil || len(entries) != 1 {
		return fmt.Errorf("rbd-fuse at %s shows no single image (%v)", at.FuseMount, err)
	}
	file := filepath.Join(at.FuseMount, entries[0].Name())
	deadline := time.Now().Add(a.sizeWait)
	for {
		st, err := mounter.Stat(ctx, file, mounter.DefaultMountCallTimeout)
		if err != nil {
			return fmt.Errorf("rbd-fuse image file: %w", err)
		}
		if st.Size >= want || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return a.m.LoopRefresh(ctx, at.Device)
}
