// Package mounter is the node side shared by the block and filesystem backends: loop devices
// over a file, format-and-mount, filesystem growth, and the commands they run, all behind
// k8s.io/mount-utils and k8s.io/utils/exec so that tests swap in fakes.
package mounter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// DefaultFsType is made on a volume staged without an fsType.
const DefaultFsType = "ext4"

// Mounter mounts, formats and resizes on the node and runs the node's storage commands.
type Mounter struct {
	*mount.SafeFormatAndMount
}

// New returns a Mounter on the host's mount table and commands.
func New() *Mounter {
	return NewWith(mount.New(""), utilexec.New())
}

// NewWith builds a Mounter on the given mount and exec implementations (fakes in tests).
func NewWith(m mount.Interface, e utilexec.Interface) *Mounter {
	return &Mounter{SafeFormatAndMount: mount.NewSafeFormatAndMount(m, e)}
}

// Run runs a command and returns its combined output; a failure includes the output, which
// never holds a secret because no command gets one on its command line.
func (m *Mounter) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := m.Exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return out, fmt.Errorf("%s %s: %w (%v)", name, strings.Join(args, " "), ctx.Err(), err)
		}
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// RunBounded is Run for a command that can block on a mount whose server is dead (losetup
// on a loop device over a FUSE file whose cluster is gone): past timeout the command is
// killed and the call answers ErrNotResponding, even while the kill cannot land yet.
func (m *Mounter) RunBounded(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	return Bounded(ctx, line, timeout, func() ([]byte, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out, err := m.Run(cctx, name, args...)
		if err != nil && cctx.Err() != nil && ctx.Err() == nil {
			return out, fmt.Errorf("%s: no answer within %v: %w", line, timeout, ErrNotResponding)
		}
		return out, err
	})
}

// IsMounted reports whether path is a mount point; a missing path is not mounted, and a
// path whose FUSE server died ("transport endpoint is not connected") counts as mounted so
// that callers unmount it.
func (m *Mounter) IsMounted(path string) (bool, error) { return MountedAt(m, path) }

// FormatAndMount makes fsType on device if it has no filesystem yet and mounts it at target.
// An existing filesystem of another type is an error, never overwritten.
func (m *Mounter) FormatAndMount(device, target, fsType string, options []string) error {
	return m.FormatAndMountWith(device, target, fsType, options, nil)
}

// FormatAndMountWith is FormatAndMount with mkfs options (before the device on mkfs's
// command line) for when it formats.
func (m *Mounter) FormatAndMountWith(device, target, fsType string, options, formatOptions []string) error {
	if fsType == "" {
		fsType = DefaultFsType
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create mount point %s: %w", target, err)
	}
	return m.FormatAndMountSensitiveWithFormatOptions(device, target, fsType, options, nil, formatOptions)
}

// ResizeFs grows the filesystem on device (mounted at mountPath) to fill the device; it
// reports whether it grew anything.
func (m *Mounter) ResizeFs(device, mountPath string) (bool, error) {
	r := mount.NewResizeFs(m.Exec)
	need, err := r.NeedResize(device, mountPath)
	if err != nil {
		return false, fmt.Errorf("check filesystem size on %s: %w", device, err)
	}
	if !need {
		return false, nil
	}
	if _, err := r.Resize(device, mountPath); err != nil {
		return false, fmt.Errorf("grow filesystem on %s: %w", device, err)
	}
	return true, nil
}

// DeviceSize reports a block device's size in bytes.
func (m *Mounter) DeviceSize(ctx context.Context, device string) (int64, error) {
	out, err := m.Run(ctx, "blockdev", "--getsize64", device)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("blockdev --getsize64 %s: unexpected output %q", device, out)
	}
	return n, nil
}

// ErrNoLoopDevice says no loop device is backed by a file.
var ErrNoLoopDevice = errors.New("no loop device")

// LoopAttach attaches a loop device to file and returns it (/dev/loopN), read-only when asked;
// a read-write device already backed by file is reused so that a retried stage does not leak
// devices. The device does direct I/O on file: through the page cache, a node keeps reading
// its own cached copy of a shared image that another node has since written
// (MULTI_NODE_MULTI_WRITER block).
func (m *Mounter) LoopAttach(ctx context.Context, file string, readOnly bool) (string, error) {
	if dev, err := m.LoopFind(ctx, file); err == nil {
		if readOnly {
			return "", fmt.Errorf("loop device %s is already attached to %s; detach it before attaching it read-only", dev, file)
		}
		return dev, nil
	} else if !errors.Is(err, ErrNoLoopDevice) {
		return "", err
	}
	args := []string{"--find", "--show", "--direct-io=on"}
	if readOnly {
		args = append(args, "--read-only")
	}
	out, err := m.Run(ctx, "losetup", append(args, file)...)
	if err != nil {
		return "", fmt.Errorf("attach loop device: %w", err)
	}
	dev := strings.TrimSpace(string(out))
	if !strings.HasPrefix(dev, "/dev/") {
		return "", fmt.Errorf("losetup printed %q, not a device", dev)
	}
	return dev, nil
}

// Loop is a loop device and the file behind it.
type Loop struct {
	Device string
	File   string
}

// loops lists the node's loop devices.
func (m *Mounter) loops(ctx context.Context) ([]Loop, error) {
	out, err := m.RunBounded(ctx, DefaultMountCallTimeout, "losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE")
	if err != nil {
		return nil, fmt.Errorf("list loop devices: %w", err)
	}
	var all []Loop
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			all = append(all, Loop{Device: f[0], File: filepath.Clean(strings.TrimSuffix(strings.Join(f[1:], " "), " (deleted)"))})
		}
	}
	return all, nil
}

// LoopFindAll returns every loop device backed by file.
func (m *Mounter) LoopFindAll(ctx context.Context, file string) ([]string, error) {
	all, err := m.loops(ctx)
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, l := range all {
		if l.File == filepath.Clean(file) {
			devs = append(devs, l.Device)
		}
	}
	return devs, nil
}

// LoopsBelow returns the loop devices backed by a file below dir.
func (m *Mounter) LoopsBelow(ctx context.Context, dir string) ([]Loop, error) {
	all, err := m.loops(ctx)
	if err != nil {
		return nil, err
	}
	var below []Loop
	for _, l := range all {
		if strings.HasPrefix(l.File, filepath.Clean(dir)+"/") {
			below = append(below, l)
		}
	}
	return below, nil
}

// LoopFind returns the loop device backed by file, or ErrNoLoopDevice.
func (m *Mounter) LoopFind(ctx context.Context, file string) (string, error) {
	devs, err := m.LoopFindAll(ctx, file)
	if err != nil {
		return "", err
	}
	if len(devs) == 0 {
		return "", fmt.Errorf("%w backed by %s", ErrNoLoopDevice, file)
	}
	return devs[0], nil
}

// LoopDetach detaches a loop device; a device that is already gone is fine.
func (m *Mounter) LoopDetach(ctx context.Context, device string) error {
	if device == "" {
		return nil
	}
	// Bounded: the detach waits for the device's I/O in flight, which a dead FUSE server
	// behind its file never completes.
	out, err := m.RunBounded(ctx, DefaultMountCallTimeout, "losetup", "--detach", device)
	if err != nil {
		s := string(out)
		if strings.Contains(s, "No such device") || strings.Contains(s, "No such file") {
			return nil
		}
		return fmt.Errorf("detach loop device: %w", err)
	}
	return nil
}

// LoopRefresh makes a loop device pick up its backing file's new size.
func (m *Mounter) LoopRefresh(ctx context.Context, device string) error {
	if _, err := m.Run(ctx, "losetup", "--set-capacity", device); err != nil {
		return fmt.Errorf("refresh loop device size: %w", err)
	}
	return nil
}
