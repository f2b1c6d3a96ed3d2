package cephfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
	cfg     *Config
	mounter *mounter.Mounter
	// kernelCeph reports whether the node can mount -t ceph.
	kernelCeph func() bool
	procs      mounter.Procs
	// fuseProcs finds the ceph-fuse processes serving a mount point.
	fuseProcs func(mountPoint string) []mounter.Daemon
	// exitWait bounds the wait for ceph-fuse to exit after unmount.
	exitWait time.Duration
	// callTimeout bounds a syscall on a mount whose MDS or OSDs may not answer.
	callTimeout time.Duration
}

var _ backend.Stager = (*Stager)(nil)

// NewStager builds the node side of a cephfs backend.
func NewStager(cfg *config.Backend) (*Stager, error) {
	fs, err := config.SectionAs[*Config](cfg)
	if err != nil {
		return nil, fmt.Errorf("cephfs backend: %w", err)
	}
	if m := fs.Mounter; m != "" {
		if err := validMounter(m); err != nil {
			return nil, fmt.Errorf("cephfs backend %q: mounter: %w", cfg.Name, err)
		}
	}
	return newStager(cfg.Name, fs, mounter.New()), nil
}

const fuseCommand = "ceph-fuse"

func newStager(name string, cfg *Config, m *mounter.Mounter) *Stager {
	s := &Stager{name: name, cfg: cfg, mounter: m, kernelCeph: kernelHasCeph, procs: mounter.HostProcs(),
		exitWait: 15 * time.Second, callTimeout: mounter.DefaultMountCallTimeout}
	s.fuseProcs = func(mp string) []mounter.Daemon { return s.procs.Serving(fuseCommand, mp) }
	return s
}

// mountRecord says how a staged volume was mounted, so unstage and repair need nothing else.
type mountRecord struct {
	Mounter string `json:"mounter"`
	FSName  string `json:"fsName"`
	Path    string `json:"path"`
	UserID  string `json:"userID"`
	// KeyFile is where earlier plugin versions kept the key for the life of the mount. The
	// key is now written only while a mount client starts; such a file is read once and removed.
	KeyFile string `json:"keyFile,omitempty"`
	Options string `json:"options,omitempty"`
	// PID is the ceph-fuse daemon serving the mount, for an admin: teardown finds the
	// daemon by its mount point and never signals a PID read from a record.
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
	// Volumes made before the publish context carried it have it in their volume context.
	path := vc[CtxRootPath]
	if path == "" {
		path = req.PublishContext[PublishContextRootPath]
	}
	if path == "" || !strings.HasPrefix(path, "/") {
		return backend.Errorf(backend.InvalidArgument, "volume %s: neither the volume context nor the publish context has an absolute %q (the subvolume path, %q); ControllerPublishVolume sets it, a static PV of a directory must set it in its volume attributes", req.ID, CtxRootPath, path)
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
			return s.Repair(ctx, req.ID, req.StagingPath, req.PublishContext)
		}
		if err := s.forgetKey(req.StagingPath, rec); err != nil {
			return err
		}
	}

	cred, err := ceph.StageCredentials(s.cfg.Credentials, req.PublishContext, req.Secrets)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return backend.Errorf(backend.Internal, "create %s: %v", target, err)
	}
	rec = &mountRecord{Mounter: kind, FSName: fs, Path: path, UserID: cred.UserID, Options: opts}
	// Recorded before mounting, so an unstage after a crash finds what to clean up.
	if err := writeRecord(req.StagingPath, rec); err != nil {
		return err
	}
	if err := s.mountWithKey(ctx, req.StagingPath, target, rec, cred); err != nil {
		return err
	}
	return writeRecord(req.StagingPath, rec)
}

// mountWithKey mounts with the key in a 0600 file that exists only while the mount client
// starts: ceph-fuse and mount.ceph read it then, and nothing keeps it at rest on the node.
func (s *Stager) mountWithKey(ctx context.Context, staging, target string, rec *mountRecord, cred ceph.Credentials) error {
	keyFile, cleanup, err := ceph.WriteKeyFile(staging, cred)
	if err != nil {
		return backend.Errorf(backend.Internal, "write key file: %v", err)
	}
	defer cleanup()
	return s.mount(ctx, target, rec, keyFile)
}

// mount mounts rec's subvolume at target and notes the ceph-fuse pid in rec.
func (s *Stager) mount(ctx context.Context, target string, rec *mountRecord, keyFile string) error {
	if rec.Mounter == MounterKernel {
		source, opts := kernelMount(s.cfg.Monitors, rec, keyFile)
		if err := s.mounter.Mount(source, target, "ceph", opts); err != nil {
			return backend.Errorf(backend.Internal, "mount -t ceph %s at %s: %v", source, target, err)
		}
		return nil
	}
	args := fuseArgs(s.cfg.Cluster, target, rec, keyFile)
	waited := backend.LongWait(ctx, "ceph-fuse start", "target", target)
	out, err := s.mounter.RunDaemon(ctx, "ceph-fuse", args...)
	if waited(err); err != nil {
		return backend.Errorf(backend.Internal, "ceph-fuse mount of %s:%s at %s failed (check the monitors %v and the cephx user %s's caps): %v %s",
			rec.FSName, rec.Path, target, s.cfg.Monitors, rec.UserID, err, strings.TrimSpace(string(out)))
	}
	if ds := s.fuseProcs(target); len(ds) > 0 {
		rec.PID = ds[0].PID
	}
	return nil
}

// fuseArgs is the ceph-fuse command line: no secret on it (a key file), no node ceph.conf
// unless the backend names one, no admin socket or log file to collide with other mounts.
func fuseArgs(cluster ceph.Cluster, target string, rec *mountRecord, keyFile string) []string {
	args := []string{target}
	args = append(args, ceph.ConfArgs(cluster, rec.UserID, keyFile)...)
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
func kernelMount(monitors []string, rec *mountRecord, keyFile string) (string, []string) {
	source := strings.Join(monitors, ",") + ":" + rec.Path
	opts := []string{"name=" + rec.UserID, "secretfile=" + keyFile, "mds_namespace=" + rec.FSName}
	if rec.Options != "" {
		opts = append(opts, strings.Split(rec.Options, ",")...)
	}
	return source, opts
}

// forgetKey removes a key an earlier plugin version kept beside the mount, and any key
// file a crash left in the staging path.
func (s *Stager) forgetKey(staging string, rec *mountRecord) error {
	if rec != nil && rec.KeyFile != "" {
		os.Remove(rec.KeyFile)
	}
	if err := ceph.RemoveKeyFiles(staging); err != nil {
		return backend.Errorf(backend.Internal, "%v", err)
	}
	return nil
}

func (s *Stager) UnstageVolume(ctx context.Context, id volid.Volume, stagingPath string) error {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return err
	}
	target := filepath.Join(stagingPath, stagedDir)
	if err := s.unmount(ctx, target, false); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove %s: %v", target, err)
	}
	if err := s.forgetKey(stagingPath, rec); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(stagingPath, recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove mount record: %v", err)
	}
	return nil
}

// unmount takes target down and stops its ceph-fuse, bounded whatever the state of the
// cluster: a dead MDS blocks a plain unmount, and ceph-fuse then never exits on its own.
func (s *Stager) unmount(ctx context.Context, target string, dead bool) error {
	fuse := mounter.FUSETeardown{Procs: s.procs, Command: fuseCommand, CallTimeout: s.callTimeout, ExitWait: s.exitWait}
	if err := fuse.Unmount(ctx, s.mounter, target, dead); err != nil {
		if ctx.Err() != nil {
			return backend.Errorf(backend.Unavailable, "%v", err)
		}
		return backend.Errorf(backend.Internal, "%v; retry the unstage", err)
	}
	return nil
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
	size, err := mounter.Bounded(ctx, target, s.callTimeout, func() (int64, error) { return quotaOf(target) })
	if errors.Is(err, mounter.ErrNotResponding) {
		return 0, s.notResponding(id, target, err)
	}
	if err == nil && size > 0 {
		return size, nil
	}
	st, err := mounter.Statfs(ctx, target, s.callTimeout)
	if errors.Is(err, mounter.ErrNotResponding) {
		return 0, s.notResponding(id, target, err)
	}
	if err != nil {
		return 0, backend.Errorf(backend.FailedPrecondition, "statfs %s: %v", target, err)
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}

func (s *Stager) notResponding(id volid.Volume, target string, err error) error {
	return backend.Errorf(backend.Unavailable, "staged volume %s: %v; the Ceph MDS or OSDs do not answer its client, retry when the cluster is back", id, err)
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
// (node reboot); nil when it is healthy or not staged. The node keeps no key at rest, so a
// remount uses the backend's configured credentials; without them the volume must be
// staged again with its secret.
func (s *Stager) Repair(ctx context.Context, id volid.Volume, stagingPath string, publishContext map[string]string) error {
	rec, err := readRecord(stagingPath)
	if err != nil || rec == nil {
		return err
	}
	cred, credErr := s.remountCredentials(rec, publishContext)
	if err := s.forgetKey(stagingPath, rec); err != nil {
		return err
	}
	target := filepath.Join(stagingPath, stagedDir)
	_, statErr := mounter.Stat(ctx, target, s.callTimeout)
	if errors.Is(statErr, mounter.ErrNotResponding) {
		return s.notResponding(id, target, statErr)
	}
	mounted, _ := s.mounter.IsMounted(target)
	if statErr == nil && mounted {
		return nil
	}
	if statErr != nil && !errors.Is(statErr, unix.ENOTCONN) && !errors.Is(statErr, unix.ENOENT) {
		return backend.Errorf(backend.Internal, "staged volume %s at %s is unusable: %v", id, target, statErr)
	}
	if credErr != nil {
		return backend.Errorf(backend.FailedPrecondition, "staged volume %s needs a remount, but the node keeps no key at rest and %v; delete the pod so that the volume is unstaged and staged again", id, credErr)
	}
	if mounted {
		// Its client is gone: nothing to flush, take it down without waiting.
		if err := s.unmount(ctx, target, true); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return backend.Errorf(backend.Internal, "create %s: %v", target, err)
	}
	if err := s.mountWithKey(ctx, stagingPath, target, rec, cred); err != nil {
		return err
	}
	rec.KeyFile = ""
	return writeRecord(stagingPath, rec)
}

// remountCredentials are the credentials Repair may mount rec with: the identity the
// request's publish context carries (a node holds no key of its own), a key an earlier
// plugin version kept beside the mount, else the backend's configured ones; always those of
// the user that mounted it.
func (s *Stager) remountCredentials(rec *mountRecord, publishContext map[string]string) (ceph.Credentials, error) {
	if u, k := publishContext[ceph.PublishContextUser], publishContext[ceph.PublishContextKey]; u != "" && k != "" {
		if u != rec.UserID {
			return ceph.Credentials{}, fmt.Errorf("the published identity %s is not %s, which mounted it", u, rec.UserID)
		}
		return ceph.Credentials{UserID: u, Key: k}, nil
	}
	if rec.KeyFile != "" {
		if key, err := os.ReadFile(rec.KeyFile); err == nil && len(key) > 0 {
			return ceph.Credentials{UserID: rec.UserID, Key: strings.TrimSpace(string(key))}, nil
		}
	}
	cred, err := ceph.CredentialsFor(s.cfg.Credentials, nil)
	if err != nil {
		return cred, fmt.Errorf("the backend config has no credentials (%v)", err)
	}
	if cred.UserID != rec.UserID {
		return cred, fmt.Errorf("the backend config's user %s is not %s, whose secret mounted it", cred.UserID, rec.UserID)
	}
	return cred, nil
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

// runQuiet runs a command for its exit status only.
func runQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}
