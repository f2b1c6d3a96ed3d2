package rbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/volid"
)

const (
	// recordFile below the staging path records how the volume is attached.
	recordFile = "shiphold-attach.json"
	// fsDirName below the staging path is where the filesystem is mounted.
	fsDirName = "fs"
)

// attachRecord is written before anything is attached, so that an unstage after a crash
// knows what to undo.
type attachRecord struct {
	Volume   string    `json:"volume"`
	Strategy string    `json:"strategy"`
	Image    imageSpec `json:"image"`
	Block    bool      `json:"block"`
	FsType   string    `json:"fsType,omitempty"`
	attachment
}

// Stager attaches RBD images on the node and mounts their filesystems.
type Stager struct {
	name      string
	cfg       config.RBD
	m         *mounter.Mounter
	attachers map[string]attacher
	sysRoot   string
}

var _ backend.Stager = (*Stager)(nil)

// NewStager returns the node side of an rbd backend on the host's mounts and commands.
func NewStager(cfg *config.Backend) (*Stager, error) {
	return newStager(cfg, mounter.New(), "/proc", "/sys")
}

func newStager(cfg *config.Backend, m *mounter.Mounter, procRoot, sysRoot string) (*Stager, error) {
	if cfg == nil || cfg.RBD == nil {
		return nil, fmt.Errorf("rbd backend: no rbd config section")
	}
	if cfg.RBD.Mounter != "" {
		if err := validMounter(cfg.RBD.Mounter); err != nil {
			return nil, fmt.Errorf("rbd backend %q config: %v", cfg.Name, err)
		}
	}
	cl := cfg.RBD.CephCluster
	return &Stager{
		name: cfg.Name, cfg: *cfg.RBD, m: m, sysRoot: sysRoot,
		attachers: map[string]attacher{
			MounterKRBD: &cliAttacher{cluster: cl, m: m, tool: "rbd"},
			MounterNBD:  &cliAttacher{cluster: cl, m: m, tool: "rbd-nbd"},
			MounterFuse: &fuseAttacher{cluster: cl, m: m, procRoot: procRoot, sizeWait: 10 * time.Second},
		},
	}, nil
}

// strategy resolves auto: krbd when the kernel has (or can load) rbd, else rbd-nbd when it
// has nbd, else rbd-fuse with a loop device, which needs only FUSE.
func (s *Stager) strategy(ctx context.Context, want string) string {
	if want == "" {
		want = s.cfg.Mounter
	}
	if want != "" && want != MounterAuto {
		return want
	}
	has := func(p string) bool { _, err := os.Stat(filepath.Join(s.sysRoot, p)); return err == nil }
	if has("bus/rbd") {
		return MounterKRBD
	}
	if _, err := s.m.Run(ctx, "modprobe", "rbd"); err == nil && has("bus/rbd") {
		return MounterKRBD
	}
	if has("module/nbd") {
		return MounterNBD
	}
	if _, err := s.m.Run(ctx, "modprobe", "nbd"); err == nil && has("module/nbd") {
		return MounterNBD
	}
	return MounterFuse
}

func recordPath(staging string) string { return filepath.Join(staging, recordFile) }
func fsPath(staging string) string     { return filepath.Join(staging, fsDirName) }

func readRecord(staging string) (*attachRecord, error) {
	data, err := os.ReadFile(recordPath(staging))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, backend.Errorf(backend.Internal, "read attach record: %v", err)
	}
	var r attachRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, backend.Errorf(backend.Internal, "attach record %s is corrupt: %v; unmount and detach by hand, then remove it", recordPath(staging), err)
	}
	return &r, nil
}

func writeRecord(staging string, r *attachRecord) error {
	data, _ := json.Marshal(r)
	tmp := recordPath(staging) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return backend.Errorf(backend.Internal, "write attach record: %v", err)
	}
	if err := os.Rename(tmp, recordPath(staging)); err != nil {
		return backend.Errorf(backend.Internal, "write attach record: %v", err)
	}
	return nil
}

func (s *Stager) StageVolume(ctx context.Context, req *backend.StageRequest) error {
	if req.ID.Backend != s.name {
		return backend.Errorf(backend.NotFound, "volume %s is not on backend %q", req.ID, s.name)
	}
	spec := imageSpec{Pool: req.Context[CtxPool], Namespace: req.Context[CtxNamespace], Image: req.Context[CtxImage]}
	if spec.Pool == "" {
		spec.Pool = s.cfg.Pool
	}
	if spec.Namespace == "" {
		spec.Namespace = req.ID.Tenant
	}
	if spec.Image == "" {
		spec.Image = imageName(req.ID.Hash)
	}
	fsType := req.FsType
	if fsType == "" {
		fsType = req.Context[CtxFsType]
	}
	if fsType == "" {
		fsType = mounter.DefaultFsType
	}
	if err := os.MkdirAll(req.StagingPath, 0o750); err != nil {
		return backend.Errorf(backend.Internal, "create staging path: %v", err)
	}
	rec, err := readRecord(req.StagingPath)
	if err != nil {
		return err
	}
	if rec != nil && rec.Volume != req.ID.String() {
		return backend.Errorf(backend.FailedPrecondition, "staging path %s holds volume %s, not %s", req.StagingPath, rec.Volume, req.ID)
	}
	if rec != nil && rec.Block != req.Block {
		return backend.Errorf(backend.FailedPrecondition, "volume %s is staged as %s at %s; unstage it first", req.ID, accessName(rec.Block), req.StagingPath)
	}
	if rec != nil && rec.Device != "" {
		if a, ok := s.attachers[rec.Strategy]; ok && a.Check(rec.attachment) == nil {
			return s.mountFs(req, rec)
		}
	}
	if rec != nil {
		// Half-done or broken: undo it and start over.
		if err := s.undo(ctx, req.StagingPath, rec); err != nil {
			return err
		}
	}
	cred, err := ceph.CredentialsFor(s.cfg.Credentials, req.Secrets)
	if err != nil {
		return err
	}
	rec = &attachRecord{Volume: req.ID.String(), Strategy: s.strategy(ctx, req.Context[CtxMounter]), Image: spec, Block: req.Block}
	if !req.Block {
		rec.FsType = fsType
	}
	a, ok := s.attachers[rec.Strategy]
	if !ok {
		return backend.Errorf(backend.InvalidArgument, "volume context mounter %q is not an attach strategy; use krbd, rbd-nbd, rbd-fuse or auto", rec.Strategy)
	}
	if err := writeRecord(req.StagingPath, rec); err != nil {
		return err
	}
	at, err := a.Attach(ctx, spec, req.StagingPath, cred)
	rec.attachment = at
	if werr := writeRecord(req.StagingPath, rec); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		uerr := s.undo(ctx, req.StagingPath, rec)
		return backend.Errorf(backend.Internal, "attach %s with %s: %v%s", spec, rec.Strategy, err, undoNote(uerr))
	}
	if err := s.mountFs(req, rec); err != nil {
		uerr := s.undo(ctx, req.StagingPath, rec)
		return backend.Errorf(backend.CodeOf(err), "%v%s", err, undoNote(uerr))
	}
	return nil
}

func undoNote(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("; cleaning up also failed: %v", err)
}

func accessName(block bool) string {
	if block {
		return "a block device"
	}
	return "a filesystem"
}

// mountFs makes and mounts the filesystem for a mount-access volume; idempotent.
func (s *Stager) mountFs(req *backend.StageRequest, rec *attachRecord) error {
	if rec.Block {
		return nil
	}
	dir := fsPath(req.StagingPath)
	mounted, err := s.m.IsMounted(dir)
	if err != nil {
		return backend.Errorf(backend.Internal, "%v", err)
	}
	if mounted {
		return nil
	}
	opts := append([]string(nil), req.MountFlags...)
	if rec.FsType == "xfs" {
		// A clone carries its parent's XFS UUID; both may be mounted on one node.
		opts = append(opts, "nouuid")
	}
	if err := s.m.FormatAndMount(rec.Device, dir, rec.FsType, opts); err != nil {
		return backend.Errorf(backend.Internal, "format and mount %s (%s) at %s: %v", rec.Device, rec.FsType, dir, err)
	}
	return nil
}

// undo unmounts, detaches and forgets whatever rec says is there.
func (s *Stager) undo(ctx context.Context, staging string, rec *attachRecord) error {
	dir := fsPath(staging)
	if err := s.m.UnmountAll(dir); err != nil {
		return backend.Errorf(backend.Internal, "%v", err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove %s: %v", dir, err)
	}
	if rec != nil {
		if a, ok := s.attachers[rec.Strategy]; ok {
			if err := a.Detach(ctx, rec.attachment); err != nil {
				return backend.Errorf(backend.Internal, "detach %s (%s): %v", rec.Image, rec.Strategy, err)
			}
		}
	}
	if err := os.Remove(recordPath(staging)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove attach record: %v", err)
	}
	return nil
}

func (s *Stager) UnstageVolume(ctx context.Context, id volid.Volume, stagingPath string) error {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return err
	}
	if rec != nil && rec.Volume != id.String() {
		return backend.Errorf(backend.FailedPrecondition, "staging path %s holds volume %s, not %s", stagingPath, rec.Volume, id)
	}
	return s.undo(ctx, stagingPath, rec)
}

func (s *Stager) PublishSource(ctx context.Context, id volid.Volume, stagingPath string) (string, bool, error) {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return "", false, err
	}
	if rec == nil || rec.Device == "" {
		return "", false, backend.Errorf(backend.FailedPrecondition, "volume %s is not staged at %s; stage it first", id, stagingPath)
	}
	if rec.Volume != id.String() {
		return "", false, backend.Errorf(backend.FailedPrecondition, "staging path %s holds volume %s, not %s", stagingPath, rec.Volume, id)
	}
	if rec.Block {
		return rec.Device, true, nil
	}
	return fsPath(stagingPath), false, nil
}

func (s *Stager) ExpandVolume(ctx context.Context, id volid.Volume, stagingPath string, requiredBytes int64) (int64, error) {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return 0, err
	}
	if rec == nil || rec.Device == "" {
		return 0, backend.Errorf(backend.FailedPrecondition, "volume %s is not staged at %s", id, stagingPath)
	}
	a, ok := s.attachers[rec.Strategy]
	if !ok {
		return 0, backend.Errorf(backend.Internal, "attach record names unknown strategy %q", rec.Strategy)
	}
	if err := a.Refresh(ctx, rec.attachment, requiredBytes); err != nil {
		return 0, backend.Errorf(backend.Internal, "refresh device size: %v", err)
	}
	size, err := s.m.DeviceSize(ctx, rec.Device)
	if err != nil {
		return 0, backend.Errorf(backend.Internal, "%v", err)
	}
	if size < requiredBytes {
		return 0, backend.Errorf(backend.FailedPrecondition, "device %s is %d bytes, less than the %d required; expand the volume on the controller first", rec.Device, size, requiredBytes)
	}
	if !rec.Block {
		if _, err := s.m.ResizeFs(rec.Device, fsPath(stagingPath)); err != nil {
			if strings.Contains(err.Error(), "Permission denied to resize") {
				return 0, backend.Errorf(backend.FailedPrecondition, "%v; online ext4 growth needs CAP_SYS_RESOURCE: give the node plugin container that capability (or privileged)", err)
			}
			return 0, backend.Errorf(backend.Internal, "%v", err)
		}
	}
	return size, nil
}

// Repair reports a staged volume whose device lost its image (a killed rbd-fuse). It does not
// re-attach under a live filesystem: publish bind mounts still hold the old one, and a second
// mount of the same filesystem from a new device would corrupt it.
func (s *Stager) Repair(ctx context.Context, id volid.Volume, stagingPath string) error {
	rec, err := readRecord(stagingPath)
	if err != nil || rec == nil || rec.Device == "" {
		return err
	}
	a, ok := s.attachers[rec.Strategy]
	if !ok {
		return nil
	}
	if err := a.Check(rec.attachment); err != nil {
		return backend.Errorf(backend.FailedPrecondition, "volume %s: %v; the node cannot reach the image any more — delete the pod so the volume is unstaged and staged again", id, err)
	}
	return nil
}
