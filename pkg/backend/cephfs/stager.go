package cephfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Below the staging path: the subvolume mount and the record of how it was made.
const (
	stagedDir  = "fs"
	recordFile = "shiphold-mount.json"
)

// Stager mounts a subvolume once per node below the staging path, with the kernel client
// where the node has it and ceph-fuse otherwise.
type Stager struct {
	name    string
	cfg     *config.CephFS
	mounter *mounter.Mounter
	// kernelCeph reports whether the node can mount -t ceph.
	kernelCeph func() bool
	// fuseProcs finds the ceph-fuse processes serving a mount point.
	fuseProcs func(mountPoint string) []int
	// exitWait bounds the wait for ceph-fuse to exit after unmount.
	exitWait time.Duration
}

var _ backend.Stager = (*Stager)(nil)

// NewStager builds the node side of a cephfs backend.
func NewStager(cfg *config.Backend) (*Stager, error) {
	if cfg == nil || cfg.CephFS == nil {
		return nil, fmt.Errorf("cephfs backend needs a cephfs section")
	}
	if m := cfg.CephFS.Mounter; m != "" {
		if err := validMounter(m); err != nil {
			return nil, fmt.Errorf("cephfs backend %q: mounter: %w", cfg.Name, err)
		}
	}
	return newStager(cfg.Name, cfg.CephFS, mounter.New()), nil
}

func newStager(name string, cfg *config.CephFS, m *mounter.Mounter) *Stager {
	return &Stager{name: name, cfg: cfg, mounter: m, kernelCeph: kernelHasCeph, fuseProcs: fuseProcesses, exitWait: 15 * time.Second}
}

// mountRecord says how a staged volume was mounted, so unstage and repair need nothing else.
type mountRecord struct {
	Mounter string `json:"mounter"`
	FSName  string `json:"fsName"`
	Path    string `json:"path"`
	UserID  string `json:"userID"`
	// KeyFile is a 0600 file beside the mount; Repair has no secrets to mount again with.
	KeyFile string `json:"keyFile"`
	Options string `json:"options,omitempty"`
	// PID is the ceph-fuse daemon serving the mount.
	PID int `json:"pid,omitempty"`
}

func readRecord(staging string) (*mountRecord, error) {
	data, err := os.ReadFile(filepath.Join(staging, recordFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, backend.Errorf(backend.Internal, "read mount record: %v", err)
	}
	var r mountRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, backend.Errorf(backend.Internal, "mount record %s is corrupt (%v); unstage the volume to clean up", filepath.Join(staging, recordFile), err)
	}
	return &r, nil
}

func writeRecord(staging string, r *mountRecord) error {
	data, _ := json.Marshal(r)
	tmp := filepath.Join(staging, recordFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return backend.Errorf(backend.Internal, "write mount record: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(staging, recordFile)); err != nil {
		return backend.Errorf(backend.Internal, "write mount record: %v", err)
	}
	return nil
}

// chooseMounter resolves kernel|fuse|auto against what the node can do.
func (s *Stager) chooseMounter(want string) (string, error) {
	if want == "" {
		want = s.cfg.Mounter
	}
	switch want {
	case MounterFuse:
		return MounterFuse, nil
	case MounterKernel:
		if !s.kernelCeph() {
			return "", backend.Errorf(backend.FailedPrecondition, "mounter %q: this node has no ceph kernel module (not in /proc/filesystems, modprobe ceph fails); use mounter fuse or auto", MounterKernel)
		}
		return MounterKernel, nil
	case "", MounterAuto:
		if s.kernelCeph() {
			return MounterKernel, nil
		}
		return MounterFuse, nil
	}
	return "", validMounter(want)
}

func (s *Stager) StageVolume(ctx context.Context, req *backend.StageRequest) error {
	if req.Block {
		return backend.Errorf(backend.InvalidArgument, "cephfs volumes are filesystems; the block access type needs an rbd backend")
	}
	vc := req.Context
	fs := vc[CtxFSName]
	if fs == "" {
		fs = s.cfg.FSName
	}
	path := vc[CtxRootPath]
	if path == "" || !strings.HasPrefix(path, "/") {
		return backend.Errorf(backend.InvalidArgument, "volume %s: volume context has no %q (the subvolume path); it is set by CreateVolume, a static PV must set it", req.ID, CtxRootPath)
	}
	kind, err := s.chooseMounter(vc[CtxMounter])
	if err != nil {
		return err
	}
	opts := vc[CtxFuseMountOptions]
	if kind == MounterKernel {
		opts = vc[CtxKernelMountOptions]
		if len(req.MountFlags) > 0 {
			opts = strings.Trim(opts+","+strings.Join(req.MountFlags, ","), ",")
		}
	}
	target := filepath.Join(req.StagingPath, stagedDir)

	rec, err := readRecord(req.StagingPath)
	if err != nil {
		return err
	}
	if rec != nil {
		if rec.FSName != fs || rec.Path != path {
			return backend.Errorf(backend.FailedPrecondition, "staging path %s already holds %s:%s, not %s:%s; unstage it first", req.StagingPath, rec.FSName, rec.Path, fs, path)
		}
		if mounted, _ := s.mounter.IsMounted(target); mounted {
			// Staged before: make sure it still answers.
			return s.Repair(ctx, req.ID, req.StagingPath)
		}
		s.forgetKey(rec)
	}

	cred, err := ceph.CredentialsFor(s.cfg.Credentials, req.Secrets)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return backend.Errorf(backend.Internal, "create %s: %v", target, err)
	}
	keyFile, _, err := ceph.WriteKeyFile(req.StagingPath, cred)
	if err != nil {
		return backend.Errorf(backend.Internal, "write key file: %v", err)
	}
	rec = &mountRecord{Mounter: kind, FSName: fs, Path: path, UserID: cred.UserID, KeyFile: keyFile, Options: opts}
	// Recorded before mounting, so an unstage after a crash finds what to clean up.
	if err := writeRecord(req.StagingPath, rec); err != nil {
		os.Remove(keyFile)
		return err
	}
	if err := s.mount(ctx, target, rec); err != nil {
		return err
	}
	return writeRecord(req.StagingPath, rec)
}

// mount mounts rec's subvolume at target and notes the ceph-fuse pid in rec.
func (s *Stager) mount(ctx context.Context, target string, rec *mountRecord) error {
	if rec.Mounter == MounterKernel {
		source, opts := kernelMount(s.cfg.Monitors, rec)
		if err := s.mounter.Mount(source, target, "ceph", opts); err != nil {
			return backend.Errorf(backend.Internal, "mount -t ceph %s at %s: %v", source, target, err)
		}
		return nil
	}
	args := fuseArgs(s.cfg.CephCluster, target, rec)
	if out, err := s.mounter.Run(ctx, "ceph-fuse", args...); err != nil {
		return backend.Errorf(backend.Internal, "ceph-fuse mount of %s:%s at %s failed (check the monitors %v and the cephx user %s's caps): %v %s",
			rec.FSName, rec.Path, target, s.cfg.Monitors, rec.UserID, err, strings.TrimSpace(string(out)))
	}
	if pids := s.fuseProcs(target); len(pids) > 0 {
		rec.PID = pids[0]
	}
	return nil
}

// fuseArgs is the ceph-fuse command line: no secret on it (a key file), no node ceph.conf
// unless the backend names one, no admin socket or log file to collide with other mounts.
func fuseArgs(cluster config.CephCluster, target string, rec *mountRecord) []string {
	args := []string{target}
	args = append(args, ceph.ConfArgs(cluster, rec.UserID, rec.KeyFile)...)
	args = append(args,
		"--client_fs="+rec.FSName,
		"--client_mountpoint="+rec.Path,
		// Quotas are enforced by the client; keep it on whatever a ceph.conf says.
		"--client_quota=true",
		"--admin_socket=",
		"--log_file=/dev/null",
	)
	if rec.Options != "" {
		for _, o := range strings.Split(rec.Options, ",") {
			args = append(args, "--"+o)
		}
	}
	return args
}

// kernelMount is the mount -t ceph source and options; mds_namespace (not fs=) works with
// the kernels of 16.2's era and later.
func kernelMount(monitors []string, rec *mountRecord) (string, []string) {
	source := strings.Join(monitors, ",") + ":" + rec.Path
	opts := []string{"name=" + rec.UserID, "secretfile=" + rec.KeyFile, "mds_namespace=" + rec.FSName}
	if rec.Options != "" {
		opts = append(opts, strings.Split(rec.Options, ",")...)
	}
	return source, opts
}

func (s *Stager) forgetKey(rec *mountRecord) {
	if rec != nil && rec.KeyFile != "" {
		os.Remove(rec.KeyFile)
	}
}

func (s *Stager) UnstageVolume(ctx context.Context, id volid.Volume, stagingPath string) error {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return err
	}
	target := filepath.Join(stagingPath, stagedDir)
	if err := s.unmount(ctx, target, rec); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove %s: %v", target, err)
	}
	s.forgetKey(rec)
	if err := os.Remove(filepath.Join(stagingPath, recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove mount record: %v", err)
	}
	return nil
}

// unmount unmounts target and waits for its ceph-fuse to exit, so none is left behind.
func (s *Stager) unmount(ctx context.Context, target string, rec *mountRecord) error {
	pids := s.fuseProcs(target)
	if rec != nil && rec.PID > 0 && !contains(pids, rec.PID) && processAlive(rec.PID) && s.isFuseOf(rec.PID, target) {
		pids = append(pids, rec.PID)
	}
	if err := s.mounter.UnmountAll(target); err != nil {
		// A dead FUSE server can leave a mount that only a lazy unmount removes.
		if lerr := unix.Unmount(target, unix.MNT_DETACH); lerr != nil && !errors.Is(lerr, unix.EINVAL) && !errors.Is(lerr, unix.ENOENT) {
			return backend.Errorf(backend.Internal, "unmount %s: %v (lazy unmount: %v)", target, err, lerr)
		}
	}
	return s.waitExit(ctx, pids)
}

// waitExit waits for ceph-fuse processes to leave after their unmount, then kills them.
func (s *Stager) waitExit(ctx context.Context, pids []int) error {
	deadline := time.Now().Add(s.exitWait)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				_ = unix.Kill(pid, unix.SIGKILL)
				time.Sleep(100 * time.Millisecond)
				if processAlive(pid) {
					return backend.Errorf(backend.Internal, "ceph-fuse (pid %d) did not exit after unmount", pid)
				}
				break
			}
			select {
			case <-ctx.Done():
				return backend.Errorf(backend.Unavailable, "waiting for ceph-fuse (pid %d) to exit: %v", pid, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func (s *Stager) isFuseOf(pid int, target string) bool {
	return contains(fuseProcesses(target), pid)
}

func (s *Stager) PublishSource(ctx context.Context, id volid.Volume, stagingPath string) (string, bool, error) {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return "", false, err
	}
	if rec == nil {
		return "", false, backend.Errorf(backend.FailedPrecondition, "volume %s is not staged at %s", id, stagingPath)
	}
	return filepath.Join(stagingPath, stagedDir), false, nil
}

// ExpandVolume has nothing to grow: the controller's quota change reaches mounted clients.
// It reports the quota the mount sees.
func (s *Stager) ExpandVolume(ctx context.Context, id volid.Volume, stagingPath string, requiredBytes int64) (int64, error) {
	target := filepath.Join(stagingPath, stagedDir)
	if size, err := quotaOf(target); err == nil && size > 0 {
		return size, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return 0, backend.Errorf(backend.FailedPrecondition, "statfs %s: %v", target, err)
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}

// quotaOf reads the CephFS quota on a mounted subvolume root; statfs rounds it down to
// the 4 MiB block size ceph-fuse reports.
func quotaOf(path string) (int64, error) {
	buf := make([]byte, 32)
	n, err := unix.Getxattr(path, "ceph.quota.max_bytes", buf)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
}

// Repair mounts again a staged volume whose client died (ENOTCONN) or whose mount is gone
// (node reboot); nil when it is healthy or not staged.
func (s *Stager) Repair(ctx context.Context, id volid.Volume, stagingPath string) error {
	rec, err := readRecord(stagingPath)
	if err != nil || rec == nil {
		return err
	}
	target := filepath.Join(stagingPath, stagedDir)
	var st unix.Stat_t
	statErr := unix.Stat(target, &st)
	mounted, _ := s.mounter.IsMounted(target)
	if statErr == nil && mounted {
		return nil
	}
	if statErr != nil && !errors.Is(statErr, unix.ENOTCONN) && !errors.Is(statErr, unix.ENOENT) {
		return backend.Errorf(backend.Internal, "staged volume %s at %s is unusable: %v", id, target, statErr)
	}
	if mounted {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return backend.Errorf(backend.Internal, "lazy unmount of dead mount %s: %v", target, err)
		}
		if err := s.waitExit(ctx, s.fuseProcs(target)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return backend.Errorf(backend.Internal, "create %s: %v", target, err)
	}
	if _, err := os.Stat(rec.KeyFile); err != nil {
		return backend.Errorf(backend.FailedPrecondition, "staged volume %s needs a remount but its key file is gone (%v); unstage and stage it again", id, err)
	}
	if err := s.mount(ctx, target, rec); err != nil {
		return err
	}
	return writeRecord(stagingPath, rec)
}

// kernelHasCeph reports whether the kernel CephFS client is there or loadable.
func kernelHasCeph() bool {
	if data, err := os.ReadFile("/proc/filesystems"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "ceph" {
				return true
			}
		}
	}
	if _, err := os.Stat("/sbin/modprobe"); err != nil {
		return false
	}
	return runQuiet("modprobe", "ceph") == nil
}

// fuseProcesses lists the ceph-fuse processes whose mount point argument is mountPoint.
func fuseProcesses(mountPoint string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if filepath.Base(argv[0]) != "ceph-fuse" {
			continue
		}
		for _, a := range argv[1:] {
			if a == mountPoint {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// Field 3, after "(comm)", is the state.
	if i := strings.LastIndexByte(string(data), ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] != 'Z'
	}
	return true
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
