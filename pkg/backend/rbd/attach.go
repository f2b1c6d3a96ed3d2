package rbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/mounter"
)

// imageSpec names an image for the node.
type imageSpec struct {
	Pool      string `json:"pool"`
	Namespace string `json:"namespace"`
	Image     string `json:"image"`
}

func (s imageSpec) String() string { return s.Pool + "/" + s.Namespace + "/" + s.Image }

// attachment is what an attach strategy left on the node; it is stored in the attach record.
type attachment struct {
	Device    string `json:"device,omitempty"`
	FuseMount string `json:"fuseMount,omitempty"`
	FusePID   int    `json:"fusePid,omitempty"`
}

// attacher makes an image a local block device and takes it away again.
type attacher interface {
	// Attach maps img; dir is the staging directory, for strategies that need a place.
	Attach(ctx context.Context, img imageSpec, dir string, cred ceph.Credentials) (attachment, error)
	// Detach undoes Attach; what is already gone is fine.
	Detach(ctx context.Context, a attachment) error
	// Refresh makes the device show the image's current size, at least want bytes.
	Refresh(ctx context.Context, a attachment, want int64) error
	// Check reports nil when the device still reaches the image.
	Check(a attachment) error
}

// cliAttacher covers krbd (`rbd map`) and rbd-nbd (`rbd-nbd map`): both print the device.
type cliAttacher struct {
	cluster config.CephCluster
	m       *mounter.Mounter
	tool    string // "rbd" or "rbd-nbd"
}

func (a *cliAttacher) Attach(ctx context.Context, img imageSpec, dir string, cred ceph.Credentials) (attachment, error) {
	keyFile, cleanup, err := ceph.WriteKeyFile(dir, cred)
	if err != nil {
		return attachment{}, err
	}
	defer cleanup()
	args := append([]string{"map", img.String()}, ceph.ConfArgs(a.cluster, cred.UserID, keyFile)...)
	out, err := a.m.Run(ctx, a.tool, args...)
	if err != nil {
		return attachment{}, fmt.Errorf("map image %s with %s: %w", img, a.tool, err)
	}
	dev := lastLine(out)
	if !strings.HasPrefix(dev, "/dev/") {
		return attachment{}, fmt.Errorf("%s map printed %q, not a device", a.tool, dev)
	}
	return attachment{Device: dev}, nil
}

func (a *cliAttacher) Detach(ctx context.Context, at attachment) error {
	if at.Device == "" {
		return nil
	}
	if _, err := os.Stat(at.Device); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := a.m.Run(ctx, a.tool, "unmap", at.Device)
	if err != nil && !strings.Contains(string(out), "not mapped") && !strings.Contains(string(out), "No such") {
		return fmt.Errorf("unmap %s: %w", at.Device, err)
	}
	return nil
}

// Refresh is a no-op: krbd and rbd-nbd follow the image's header and resize the device.
func (a *cliAttacher) Refresh(ctx context.Context, at attachment, want int64) error { return nil }

func (a *cliAttacher) Check(at attachment) error {
	if _, err := os.Stat(at.Device); err != nil {
		return fmt.Errorf("device %s is gone: %w", at.Device, err)
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// fuseAttacher exposes the image as a file with rbd-fuse (librbd in user space) and puts a
// loop device on it: the strategy for nodes without the rbd and nbd kernel modules.
type fuseAttacher struct {
	cluster config.CephCluster
	m       *mounter.Mounter
	// procRoot is /proc; tests point it elsewhere.
	procRoot string
	// sizeWait bounds the wait for rbd-fuse to show a grown image.
	sizeWait time.Duration
}

const fuseDirName = "rbd-fuse"

func (a *fuseAttacher) Attach(ctx context.Context, img imageSpec, dir string, cred ceph.Credentials) (attachment, error) {
	at := attachment{FuseMount: filepath.Join(dir, fuseDirName)}
	file := filepath.Join(at.FuseMount, img.Image)
	mounted, err := a.m.IsMounted(at.FuseMount)
	if err != nil {
		return at, err
	}
	if !mounted {
		if err := os.MkdirAll(at.FuseMount, 0o700); err != nil {
			return at, fmt.Errorf("create %s: %w", at.FuseMount, err)
		}
		keyFile, cleanup, err := ceph.WriteKeyFile(dir, cred)
		if err != nil {
			return at, err
		}
		// rbd-fuse reads the key at start and keeps it; the file goes right after.
		args := append([]string{at.FuseMount}, ceph.ConfArgs(a.cluster, cred.UserID, keyFile)...)
		args = append(args, "-p", img.Pool, "--namespace="+img.Namespace, "-r", img.Image)
		_, err = a.m.Run(ctx, "rbd-fuse", args...)
		cleanup()
		if err != nil {
			return at, fmt.Errorf("rbd-fuse %s: %w", img, err)
		}
	}
	at.FusePID = a.fusePID(at.FuseMount)
	if _, err := os.Stat(file); err != nil {
		return at, fmt.Errorf("rbd-fuse mounted %s but shows no %s: %w; check that the image exists and the cephx user may read it", at.FuseMount, img.Image, err)
	}
	dev, err := a.m.LoopAttach(ctx, file)
	if err != nil {
		return at, err
	}
	at.Device = dev
	return at, nil
}

// fusePID finds the daemonised rbd-fuse serving mountpoint.
func (a *fuseAttacher) fusePID(mountpoint string) int {
	entries, err := os.ReadDir(a.procRoot)
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(a.procRoot, e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) >= 2 && filepath.Base(args[0]) == "rbd-fuse" && args[1] == mountpoint && alive(a.procRoot, pid) {
			return pid
		}
	}
	return 0
}

// alive is false for a process that is gone or a zombie.
func alive(procRoot string, pid int) bool {
	st, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(st)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func (a *fuseAttacher) Detach(ctx context.Context, at attachment) error {
	if at.Device != "" {
		if err := a.m.LoopDetach(ctx, at.Device); err != nil {
			return err
		}
	} else if at.FuseMount != "" {
		// A record written before the loop device was made: find it by its file.
		if entries, _ := os.ReadDir(at.FuseMount); len(entries) == 1 {
			if dev, err := a.m.LoopFind(ctx, filepath.Join(at.FuseMount, entries[0].Name())); err == nil {
				if err := a.m.LoopDetach(ctx, dev); err != nil {
					return err
				}
			}
		}
	}
	if at.FuseMount == "" {
		return nil
	}
	pid := at.FusePID
	if pid == 0 {
		pid = a.fusePID(at.FuseMount)
	}
	if err := a.m.UnmountAll(at.FuseMount); err != nil {
		// fusermount -u is what FUSE expects; the mount-utils umount can refuse on some hosts.
		if _, ferr := a.m.Run(ctx, "fusermount", "-u", at.FuseMount); ferr != nil {
			return fmt.Errorf("unmount rbd-fuse at %s: %v; %v", at.FuseMount, err, ferr)
		}
	}
	if pid > 0 {
		if err := waitExit(ctx, a.procRoot, pid, 10*time.Second); err != nil {
			return fmt.Errorf("rbd-fuse (pid %d) for %s: %w", pid, at.FuseMount, err)
		}
	}
	if err := os.Remove(at.FuseMount); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", at.FuseMount, err)
	}
	return nil
}

// waitExit waits for a process to exit, then kills it when it outstays grace.
func waitExit(ctx context.Context, procRoot string, pid int, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for alive(procRoot, pid) {
		if time.Now().After(deadline) {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
			time.Sleep(100 * time.Millisecond)
			if alive(procRoot, pid) {
				return fmt.Errorf("did not exit after unmount and SIGKILL")
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
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
		st, err := os.Stat(file)
		if err != nil {
			return fmt.Errorf("rbd-fuse image file: %w", err)
		}
		if st.Size() >= want || time.Now().After(deadline) {
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

func (a *fuseAttacher) Check(at attachment) error {
	if at.FusePID > 0 && !alive(a.procRoot, at.FusePID) {
		return fmt.Errorf("rbd-fuse (pid %d) serving %s has exited", at.FusePID, at.FuseMount)
	}
	if _, err := os.ReadDir(at.FuseMount); err != nil {
		return fmt.Errorf("rbd-fuse mount %s: %w", at.FuseMount, err)
	}
	if _, err := os.Stat(at.Device); err != nil {
		return fmt.Errorf("loop device %s: %w", at.Device, err)
	}
	return nil
}
