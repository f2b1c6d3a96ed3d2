package isilon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/volid"
)

const (
	stagedDir = "fs"
	// recordFile below the staging path records how the volume is mounted.
	recordFile = "shiphold-mount.json"
	// unmountTimeout is how long a normal unmount may take before it is forced (a dead NFS
	// server blocks unmount forever otherwise).
	unmountTimeout = 10 * time.Second
)

// Stager mounts Isilon NFS exports on the node at <staging>/fs.
type Stager struct {
	name string
	cfg  *Config
	// Mounter performs the NFS mounts; NewStager sets the host's mounter, or the test-only
	// LoopbackNFS stand-in when $SHIPHOLD_NFS_STANDIN is set.
	Mounter mount.Interface
	// CallTimeout bounds one syscall on a mount whose NFS server may be dead; 0 means
	// mounter.DefaultMountCallTimeout.
	CallTimeout time.Duration
}

func (s *Stager) callTimeout() time.Duration {
	if s.CallTimeout > 0 {
		return s.CallTimeout
	}
	return mounter.DefaultMountCallTimeout
}

var _ backend.Stager = (*Stager)(nil)

// NewStager builds the node side. It contacts nothing.
func NewStager(cfg *config.Backend) (*Stager, error) {
	ic, err := config.SectionAs[*Config](cfg)
	if err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "isilon backend: %v", err)
	}
	s := &Stager{name: cfg.Name, cfg: ic, Mounter: mount.New("")}
	if root := os.Getenv(StandInEnv); root != "" {
		m, err := NewLoopbackNFS(cfg, root)
		if err != nil {
			return nil, err
		}
		klog.Warningf("isilon backend %q: %s is set: NFS mounts are SIMULATED by bind mounts below %s (tests only)", cfg.Name, StandInEnv, root)
		s.Mounter = m
	}
	return s, nil
}

// mountRecord is what StageVolume leaves beside the mount, so Repair and a restarted plugin
// can remount the same export.
type mountRecord struct {
	VolumeID string   `json:"volumeID"`
	Source   string   `json:"source"`
	Options  []string `json:"options,omitempty"`
}

// mountSource formats server:/path, bracketing IPv6 addresses.
func mountSource(server, exportPath string) string {
	if strings.Contains(server, ":") && !strings.HasPrefix(server, "[") {
		server = "[" + server + "]"
	}
	return server + ":" + exportPath
}

func (s *Stager) source(req *backend.StageRequest) (string, error) {
	pick := func(key string) string {
		if v := req.PublishContext[key]; v != "" {
			return v
		}
		return req.Context[key]
	}
	server, exportPath := pick(CtxNFSServer), pick(CtxExportPath)
	if server == "" || exportPath == "" {
		z, err := zoneOfID(s.cfg, req.ID)
		if err != nil {
			return "", err
		}
		if server == "" {
			server = z.nfsServer
		}
		if exportPath == "" {
			exportPath = z.volumeDir(req.ID)
		}
	}
	if !strings.HasPrefix(exportPath, "/ifs/") {
		return "", backend.Errorf(backend.InvalidArgument, "isilon: export path %q must be below /ifs/", exportPath)
	}
	return mountSource(server, path.Clean(exportPath)), nil
}

func (s *Stager) mounted(target string) (bool, error) {
	mps, err := s.Mounter.List()
	if err != nil {
		return false, backend.Errorf(backend.Internal, "list mounts: %v", err)
	}
	return slices.ContainsFunc(mps, func(mp mount.MountPoint) bool { return filepath.Clean(mp.Path) == filepath.Clean(target) }), nil
}

func readRecord(staging string) (*mountRecord, error) {
	data, err := os.ReadFile(filepath.Join(staging, recordFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, backend.Errorf(backend.Internal, "read %s: %v", recordFile, err)
	}
	var r mountRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, backend.Errorf(backend.Internal, "%s in %s is corrupt: %v", recordFile, staging, err)
	}
	return &r, nil
}

func writeRecord(staging string, r *mountRecord) error {
	data, _ := json.Marshal(r)
	tmp := filepath.Join(staging, recordFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return backend.Errorf(backend.Internal, "write %s: %v", recordFile, err)
	}
	if err := os.Rename(tmp, filepath.Join(staging, recordFile)); err != nil {
		return backend.Errorf(backend.Internal, "write %s: %v", recordFile, err)
	}
	return nil
}

// StageVolume mounts server:/exportPath at <staging>/fs with the class's mount flags.
func (s *Stager) StageVolume(ctx context.Context, req *backend.StageRequest) error {
	if req.Block {
		return backend.Errorf(backend.InvalidArgument, "isilon volumes are NFS filesystems; the block access type is not supported")
	}
	source, err := s.source(req)
	if err != nil {
		return err
	}
	target := filepath.Join(req.StagingPath, stagedDir)
	if err := os.MkdirAll(target, 0o750); err != nil {
		return backend.Errorf(backend.Internal, "create %s: %v", target, err)
	}
	rec := &mountRecord{VolumeID: req.ID.String(), Source: source, Options: slices.Clone(req.MountFlags)}
	mounted, err := s.mounted(target)
	if err != nil {
		return err
	}
	if mounted {
		old, err := readRecord(req.StagingPath)
		if err != nil {
			return err
		}
		if old != nil && old.Source != source {
			return backend.Errorf(backend.AlreadyExists, "isilon: %s already holds %s, not %s", target, old.Source, source)
		}
		return writeRecord(req.StagingPath, rec)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.Mounter.Mount(source, target, "nfs", req.MountFlags); err != nil {
		return mountError(source, target, err)
	}
	if err := writeRecord(req.StagingPath, rec); err != nil {
		_ = s.unmountAll(ctx, target)
		return err
	}
	return nil
}

func mountError(source, target string, err error) error {
	var se *backend.StorageError
	if errors.As(err, &se) {
		return err
	}
	return backend.Errorf(backend.Internal, "mount -t nfs %s %s: %v", source, target, err)
}

// unmountAll unmounts target until nothing is mounted there; an unmount that a dead NFS
// server blocks is forced, then made lazy.
func (s *Stager) unmountAll(ctx context.Context, target string) error {
	if _, err := mounter.UnmountEvery(ctx, s.Mounter, target, unmountTimeout); err != nil {
		return backend.Errorf(backend.Internal, "unmount %s: %v", target, err)
	}
	return nil
}

// UnstageVolume unmounts <staging>/fs and removes what StageVolume left. Idempotent.
func (s *Stager) UnstageVolume(ctx context.Context, id volid.Volume, stagingPath string) error {
	target := filepath.Join(stagingPath, stagedDir)
	if err := s.unmountAll(ctx, target); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove %s: %v", target, err)
	}
	if err := os.Remove(filepath.Join(stagingPath, recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove %s: %v", recordFile, err)
	}
	return nil
}

// PublishSource is <staging>/fs once staged.
func (s *Stager) PublishSource(ctx context.Context, id volid.Volume, stagingPath string) (string, bool, error) {
	target := filepath.Join(stagingPath, stagedDir)
	mounted, err := s.mounted(target)
	if err != nil {
		return "", false, err
	}
	if !mounted {
		return "", false, backend.Errorf(backend.FailedPrecondition, "isilon: volume %s is not staged at %s; call NodeStageVolume first", id, stagingPath)
	}
	return target, false, nil
}

// ExpandVolume has nothing to grow on the node: the quota is the size. It reports what the
// mount shows (with a container quota, the quota's hard threshold).
func (s *Stager) ExpandVolume(ctx context.Context, id volid.Volume, stagingPath string, requiredBytes int64) (int64, error) {
	target := filepath.Join(stagingPath, stagedDir)
	st, err := mounter.Statfs(ctx, target, s.callTimeout())
	if errors.Is(err, mounter.ErrNotResponding) {
		return 0, s.notResponding(id, target, err)
	}
	if err != nil {
		return 0, backend.Errorf(backend.FailedPrecondition, "isilon: statfs %s: %v", target, err)
	}
	return int64(st.Blocks) * st.Bsize, nil
}

// Repair remounts a staged export whose mount went stale (ESTALE after the export was
// recreated, or the mount vanished). It returns nil when nothing needed repair or the
// volume is not staged here.
func (s *Stager) Repair(ctx context.Context, id volid.Volume, stagingPath string, _ map[string]string) error {
	rec, err := readRecord(stagingPath)
	if err != nil || rec == nil {
		return err
	}
	target := filepath.Join(stagingPath, stagedDir)
	mounted, err := s.mounted(target)
	if err != nil {
		return err
	}
	if mounted {
		// Bounded: the caller holds the volume's lock, and a dead server blocks a stat for
		// ever. A mount that does not answer is reported, not remounted: a new mount of a
		// dead server would block too.
		_, err := mounter.Stat(ctx, target, s.callTimeout())
		if errors.Is(err, mounter.ErrNotResponding) {
			return s.notResponding(id, target, err)
		}
		if err == nil || !(errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.EIO)) {
			return nil
		}
		klog.FromContext(ctx).Info("NFS mount unusable; remounting", "target", target, "source", rec.Source, "reason", err.Error())
		if err := s.unmountAll(ctx, target); err != nil {
			return err
		}
	} else {
		klog.FromContext(ctx).Info("NFS mount missing; remounting", "target", target, "source", rec.Source)
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return backend.Errorf(backend.Internal, "create %s: %v", target, err)
	}
	if err := s.Mounter.Mount(rec.Source, target, "nfs", rec.Options); err != nil {
		return mountError(rec.Source, target, err)
	}
	return nil
}

func (s *Stager) notResponding(id volid.Volume, target string, err error) error {
	return backend.Errorf(backend.Unavailable, "isilon: NFS mount of volume %s: %v; the NFS server does not answer, retry when it is back", id, err)
}

// SourceAddressToward is the source address this node uses to reach server: the address
// an NFS server sees, so the one an export must list. No packet is sent.
func SourceAddressToward(server string) (string, error) {
	host := strings.Trim(server, "[]")
	conn, err := net.Dial("udp", net.JoinHostPort(host, "2049"))
	if err != nil {
		return "", fmt.Errorf("route to NFS server %s: %w", server, err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}
