package mounter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Daemon is one process named beyond its PID: the kernel reuses PIDs, never the pair of PID
// and start time within one boot.
type Daemon struct {
	PID int `json:"pid"`
	// Start is the process's start time in clock ticks after boot (/proc/PID/stat field 22).
	Start uint64 `json:"start"`
}

// Procs reads the processes of a /proc tree. Mount daemons (ceph-fuse, rbd-fuse) are found
// by what they serve, never trusted by a PID from a record: a restart or a reboot gives that
// PID to another process.
type Procs struct {
	// Root is /proc; tests point it at a fake tree.
	Root string
	// signal sends sig to d only while it is still d; nil signals through a pidfd.
	signal func(d Daemon, sig unix.Signal, still func() bool) error
	// term is how long a daemon gets between SIGTERM and SIGKILL; 0 means termWait.
	term time.Duration
}

// HostProcs reads the host's /proc.
func HostProcs() Procs { return Procs{Root: "/proc"} }

// Serving lists the live processes named cmd whose arguments include mountpoint.
func (p Procs) Serving(cmd, mountpoint string) []Daemon {
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return nil
	}
	var out []Daemon
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		d, ok := p.lookup(pid)
		if ok && p.serves(d, cmd, mountpoint) {
			out = append(out, d)
		}
	}
	return out
}

// Args returns the arguments (after the command) of d while it is still the same process.
func (p Procs) Args(d Daemon) ([]string, bool) {
	now, ok := p.lookup(d.PID)
	if !ok || now.Start != d.Start {
		return nil, false
	}
	data, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(d.PID), "cmdline"))
	if err != nil || len(data) == 0 {
		return nil, false
	}
	argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	return argv, true
}

// Is reports whether d is still the live process cmd serving mountpoint.
func (p Procs) Is(d Daemon, cmd, mountpoint string) bool { return p.serves(d, cmd, mountpoint) }

func (p Procs) serves(d Daemon, cmd, mountpoint string) bool {
	argv, ok := p.Args(d)
	return ok && filepath.Base(argv[0]) == cmd && slices.Contains(argv[1:], mountpoint)
}

// lookup reads a live (not zombie) process's start time.
func (p Procs) lookup(pid int) (Daemon, bool) {
	data, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return Daemon{}, false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Daemon{}, false
	}
	// After "(comm)": field 3 is the state, field 22 the start time.
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return Daemon{}, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Daemon{}, false
	}
	return Daemon{PID: pid, Start: start}, true
}

// termWait is how long a daemon gets between SIGTERM and SIGKILL.
const termWait = 2 * time.Second

// StopAfterUnmount waits up to grace for daemons, which served mountpoint until its
// unmount, to exit; one that stays gets SIGTERM, then SIGKILL, but only while it is still
// cmd serving mountpoint with the same start time, so a reused PID is never signalled.
// A grace of 0 is for a daemon that cannot finish on its own (its storage is gone).
func (p Procs) StopAfterUnmount(ctx context.Context, daemons []Daemon, cmd, mountpoint string, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for _, d := range daemons {
		if p.waitGone(ctx, d, cmd, mountpoint, time.Until(deadline)) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for %s (pid %d) serving %s to exit: %w", cmd, d.PID, mountpoint, err)
		}
		if err := p.signalIf(d, unix.SIGTERM, cmd, mountpoint); err != nil {
			return fmt.Errorf("%s (pid %d) serving %s: %w", cmd, d.PID, mountpoint, err)
		}
		if p.waitGone(ctx, d, cmd, mountpoint, p.termWait()) {
			continue
		}
		if err := p.signalIf(d, unix.SIGKILL, cmd, mountpoint); err != nil {
			return fmt.Errorf("%s (pid %d) serving %s: %w", cmd, d.PID, mountpoint, err)
		}
		if !p.waitGone(ctx, d, cmd, mountpoint, 2*time.Second) {
			return fmt.Errorf("%s (pid %d) serving %s did not exit after its unmount, SIGTERM and SIGKILL", cmd, d.PID, mountpoint)
		}
	}
	return nil
}

func (p Procs) termWait() time.Duration {
	if p.term > 0 {
		return p.term
	}
	return termWait
}

// waitGone waits up to wait for d to be no longer cmd serving mountpoint.
func (p Procs) waitGone(ctx context.Context, d Daemon, cmd, mountpoint string, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for p.Is(d, cmd, mountpoint) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func (p Procs) signalIf(d Daemon, sig unix.Signal, cmd, mountpoint string) error {
	still := func() bool { return p.Is(d, cmd, mountpoint) }
	if p.signal != nil {
		return p.signal(d, sig, still)
	}
	return signalThroughPidfd(d, sig, still)
}

// signalThroughPidfd holds the process by a pidfd before checking who it is, so the signal
// reaches the process that was checked even if the PID is reused in between.
func signalThroughPidfd(d Daemon, sig unix.Signal, still func() bool) error {
	fd, err := unix.PidfdOpen(d.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	if !still() {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%s: %w", unix.SignalName(sig), err)
	}
	return nil
}
