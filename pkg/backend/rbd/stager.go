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

	"k8s.io/klog/v2"

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
// knows what to undo. It is a claim, never a fact: before its device is used again the
// kernel is asked what that device maps now.
type attachRecord struct {
	Volume   string    `json:"volume"`
	Strategy string    `json:"strategy"`
	Image    imageSpec `json:"image"`
	Block    bool      `json:"block"`
	FsType   string    `json:"fsType,omitempty"`
	ReadOnly bool      `json:"readOnly,omitempty"`
	// BootID is the kernel's boot id at attach time: nothing a record names survives a
	// reboot. Records of earlier plugin versions have none and are checked by identity only.
	BootID string `json:"bootId,omitempty"`
	attachment
}

// Stager attaches RBD images on the node and mounts their filesystems.
type Stager struct {
	name      string
	cfg       Config
	m         *mounter.Mounter
	attachers map[string]attacher
	procRoot  string
	sysRoot   string
}

var _ backend.Stager = (*Stager)(nil)

// NewStager returns the node side of an rbd backend on the host's mounts and commands.
func NewStager(cfg *config.Backend) (*Stager, error) {
	return newStager(cfg, mounter.New(), "/proc", "/sys")
}

func newStager(cfg *config.Backend, m *mounter.Mounter, procRoot, sysRoot string) (*Stager, error) {
	rc, err := config.SectionAs[*Config](cfg)
	if err != nil {
		return nil, fmt.Errorf("rbd backend: %w", err)
	}
	if rc.Mounter != "" {
		if err := validMounter(rc.Mounter); err != nil {
			return nil, fmt.Errorf("rbd backend %q config: %v", cfg.Name, err)
		}
	}
	cl := rc.Cluster
	return &Stager{
		name: cfg.Name, cfg: *rc, m: m, procRoot: procRoot, sysRoot: sysRoot,
		attachers: map[string]attacher{
			MounterKRBD: newKRBDAttacher(cl, m, sysRoot),
			MounterNBD:  newNBDAttacher(cl, m),
			MounterFuse: &fuseAttacher{cluster: cl, m: m, procs: mounter.Procs{Root: procRoot}, sysRoot: sysRoot,
				sizeWait: 10 * time.Second, exitWait: 10 * time.Second},
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

// bootID is the kernel's id of the running boot.
func (s *Stager) bootID() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.procRoot, "sys/kernel/random/boot_id"))
	if err != nil {
		return "", backend.Errorf(backend.Internal, "read the boot id: %v", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// sameBoot reports whether rec was written during this boot (or by a plugin that kept no
// boot id, whose record is then checked by identity alone).
func (s *Stager) sameBoot(rec *attachRecord) (bool, error) {
	if rec.BootID == "" {
		return true, nil
	}
	boot, err := s.bootID()
	return rec.BootID == boot, err
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
	if rec != nil {
		if done, err := s.reuse(ctx, req, rec); done || err != nil {
			return err
		}
		// Half done, from another boot, or no longer provably this image: undo what the
		// kernel shows is this image's, and start over.
		if err := s.undo(ctx, req.StagingPath, rec); err != nil {
			return err
		}
	}
	return s.attachAndMount(ctx, req)
}

// imageOf is the image a stage request names, from its volume context or its ID.
func (s *Stager) imageOf(req *backend.StageRequest) imageSpec {
	spec := imageSpec{Pool: req.Context[CtxPool], Namespace: req.Context[CtxNamespace], Image: req.Context[CtxImage]}
	if spec.Pool == "" {
		spec.Pool = s.cfg.Pool
	}
	if spec.Namespace == "" && req.ID.Object == "" {
		spec.Namespace = req.ID.Tenant
	}
	if spec.Image == "" {
		spec.Image = volumeImage(req.ID)
	}
	return spec
}

// reuse serves the request with rec's attachment when the kernel confirms that it is still
// this image's. It reports false when the stage must be done again.
func (s *Stager) reuse(ctx context.Context, req *backend.StageRequest, rec *attachRecord) (bool, error) {
	same, err := s.sameBoot(rec)
	if err != nil || !same || rec.Device == "" {
		return false, err
	}
	a, ok := s.attachers[rec.Strategy]
	if !ok {
		return false, nil
	}
	if err := a.Verify(ctx, rec.Image, req.StagingPath, rec.attachment); err != nil {
		klog.FromContext(ctx).Info("Attach record not trusted; attaching again", "staging", req.StagingPath, "reason", err.Error())
		return false, nil
	}
	if rec.ReadOnly && !s.deviceReadOnly(rec.Device) {
		klog.FromContext(ctx).Info("Device mapped read-only is writable now; attaching again", "device", rec.Device)
		return false, nil
	}
	if rec.ReadOnly != req.WritesNothing() {
		return true, backend.Errorf(backend.FailedPrecondition, "volume %s is staged %s at %s; unstage it before staging it %s",
			req.ID, rwName(rec.ReadOnly), req.StagingPath, rwName(req.WritesNothing()))
	}
	if rec.Block {
		return true, nil
	}
	if src := s.mountSource(fsPath(req.StagingPath)); src != "" {
		if src != rec.Device {
			return true, backend.Errorf(backend.FailedPrecondition, "%s is mounted from %s, not from %s, the device of volume %s; unmount it by hand",
				fsPath(req.StagingPath), src, rec.Device, req.ID)
		}
		return true, nil
	}
	err = s.mountFs(req, rec, false)
	if errors.Is(err, errNoFilesystem) {
		return false, nil
	}
	return true, err
}

// deviceReadOnly reports whether the kernel holds a block device read-only.
func (s *Stager) deviceReadOnly(device string) bool {
	b, err := os.ReadFile(filepath.Join(s.sysRoot, "block", filepath.Base(device), "ro"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func rwName(readOnly bool) string {
	if readOnly {
		return "read-only"
	}
	return "read-write"
}

// mountSource is the device mounted at dir, "" when nothing is.
func (s *Stager) mountSource(dir string) string {
	mps, err := s.m.List()
	if err != nil {
		return ""
	}
	for _, mp := range mps {
		if filepath.Clean(mp.Path) == filepath.Clean(dir) {
			return mp.Device
		}
	}
	return ""
}

// attachAndMount maps the image afresh, checks that the new device is the image, and only
// then makes (if needed) and mounts its filesystem.
func (s *Stager) attachAndMount(ctx context.Context, req *backend.StageRequest) error {
	cred, err := ceph.StageCredentials(s.cfg.Credentials, req.PublishContext, req.Secrets)
	if err != nil {
		return err
	}
	boot, err := s.bootID()
	if err != nil {
		return err
	}
	spec := s.imageOf(req)
	rec := &attachRecord{Volume: req.ID.String(), Strategy: s.strategy(ctx, req.Context[CtxMounter]), Image: spec,
		Block: req.Block, ReadOnly: req.WritesNothing(), BootID: boot}
	if !req.Block {
		rec.FsType = fsTypeOf(req)
	}
	a, ok := s.attachers[rec.Strategy]
	if !ok {
		return backend.Errorf(backend.InvalidArgument, "volume context mounter %q is not an attach strategy; use krbd, rbd-nbd, rbd-fuse or auto", rec.Strategy)
	}
	// A crash inside an earlier map leaves mappings that no record names.
	if err := s.release(ctx, a, spec, req.StagingPath); err != nil {
		return backend.Errorf(backend.Internal, "detach earlier mappings of %s: %v", spec, err)
	}
	if err := writeRecord(req.StagingPath, rec); err != nil {
		return err
	}
	at, err := a.Attach(ctx, spec, req.StagingPath, cred, attachOptions{ReadOnly: rec.ReadOnly, Exclusive: req.SingleWriter()})
	rec.attachment = at
	if werr := writeRecord(req.StagingPath, rec); werr != nil && err == nil {
		err = werr
	}
	if err == nil {
		if verr := a.Verify(ctx, spec, req.StagingPath, at); verr != nil {
			err = fmt.Errorf("the device just attached is not the image: %w", verr)
		}
	}
	if err != nil {
		uerr := s.undo(ctx, req.StagingPath, rec)
		return backend.Errorf(backend.Internal, "attach %s with %s: %v%s", spec, rec.Strategy, err, undoNote(uerr))
	}
	if err := s.mountFs(req, rec, true); err != nil {
		uerr := s.undo(ctx, req.StagingPath, rec)
		return backend.Errorf(backend.CodeOf(err), "%v%s", err, undoNote(uerr))
	}
	return nil
}

func fsTypeOf(req *backend.StageRequest) string {
	if req.FsType != "" {
		return req.FsType
	}
	if t := req.Context[CtxFsType]; t != "" {
		return t
	}
	return mounter.DefaultFsType
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

// errNoFilesystem says a device that this call did not map holds no filesystem.
var errNoFilesystem = errors.New("no filesystem")

// mountFs mounts the filesystem of a mount-access volume. Only a device this call has just
// mapped and checked (fresh) is ever formatted; a reader-only stage never formats.
func (s *Stager) mountFs(req *backend.StageRequest, rec *attachRecord, fresh bool) error {
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
	existing, err := s.m.GetDiskFormat(rec.Device)
	if err != nil {
		return backend.Errorf(backend.Internal, "read the filesystem type on %s: %v", rec.Device, err)
	}
	formatted := existing != ""
	switch {
	case existing == "" && rec.ReadOnly:
		return backend.Errorf(backend.FailedPrecondition, "volume %s has no filesystem yet, and a read-only stage cannot make one: populate it first (stage it read-write on one node, or create it from a snapshot or volume)", req.ID)
	case existing == "" && !fresh:
		return errNoFilesystem
	case existing == "":
		existing = rec.FsType
	}
	if formatted && !rec.ReadOnly {
		// a volume grown while not staged, or whose online growth failed, is grown now
		if _, err := s.m.GrowUnmounted(rec.Device, existing); err != nil {
			return backend.Errorf(backend.Internal, "%v", err)
		}
	}
	opts := mountOptions(req.MountFlags, existing, rec.ReadOnly)
	if err := s.m.FormatAndMountWith(rec.Device, dir, rec.FsType, opts, thinFormatOptions(rec.FsType)); err != nil {
		return backend.Errorf(backend.Internal, "format and mount %s (%s) at %s: %v", rec.Device, rec.FsType, dir, err)
	}
	return nil
}

// thinFormatOptions: an image reads zeros where it was never written, so mkfs need not
// discard it nor zero inode tables and journal (20 parallel mkfs.ext4 on rbd-fuse spent
// seconds writing 32 MiB journals of zeros each; 0.87 s against 0.07 s for one alone).
func thinFormatOptions(fsType string) []string {
	switch fsType {
	case "ext4", "ext3", "":
		return []string{"-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1"}
	case "xfs":
		return []string{"-K"}
	}
	return nil
}

// mountOptions adds what the filesystem needs: a clone carries its parent's XFS UUID (both
// may be mounted on one node), and a read-only mount must not replay a journal, which
// writes to the device even with ro.
func mountOptions(flags []string, fsType string, readOnly bool) []string {
	opts := append([]string(nil), flags...)
	if fsType == "xfs" {
		opts = append(opts, "nouuid")
	}
	if readOnly {
		opts = append(opts, "ro")
		switch fsType {
		case "ext3", "ext4":
			opts = append(opts, "noload")
		case "xfs":
			opts = append(opts, "norecovery")
		}
	}
	return opts
}

// undo unmounts, then detaches whatever the kernel shows maps rec's image at this staging
// path (never what the record merely names), removes stray keys and forgets the record.
func (s *Stager) undo(ctx context.Context, staging string, rec *attachRecord) error {
	dir := fsPath(staging)
	// Bounded: a filesystem flushing to a dead cluster never finishes its unmount. The
	// detach below then finds its device held and takes the storage side down by force.
	if _, err := mounter.UnmountEvery(ctx, s.m, dir, mounter.DefaultMountCallTimeout); err != nil {
		return backend.Errorf(backend.Internal, "%v", err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove %s: %v", dir, err)
	}
	if rec != nil && rec.Image.Image != "" {
		if a, ok := s.attachers[rec.Strategy]; ok {
			if err := s.release(ctx, a, rec.Image, staging); err != nil {
				return backend.Errorf(backend.Internal, "detach %s (%s): %v", rec.Image, rec.Strategy, err)
			}
		}
	}
	if err := ceph.RemoveKeyFiles(staging); err != nil {
		return backend.Errorf(backend.Internal, "%v", err)
	}
	if err := os.Remove(recordPath(staging)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return backend.Errorf(backend.Internal, "remove attach record: %v", err)
	}
	return nil
}

// release detaches every mapping of img that a strategy finds at this staging path.
func (s *Stager) release(ctx context.Context, a attacher, img imageSpec, staging string) error {
	maps, err := a.Mappings(ctx, img, staging)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if err := a.Detach(ctx, m); err != nil {
			return err
		}
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

// staged reads the record of a volume staged at stagingPath during this boot.
func (s *Stager) staged(id volid.Volume, stagingPath string) (*attachRecord, error) {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.Device == "" {
		return nil, backend.Errorf(backend.FailedPrecondition, "volume %s is not staged at %s; stage it first", id, stagingPath)
	}
	if rec.Volume != id.String() {
		return nil, backend.Errorf(backend.FailedPrecondition, "staging path %s holds volume %s, not %s", stagingPath, rec.Volume, id)
	}
	same, err := s.sameBoot(rec)
	if err != nil {
		return nil, err
	}
	if !same {
		return nil, backend.Errorf(backend.FailedPrecondition, "volume %s was staged at %s before the node restarted; its device is gone or another's: stage it again", id, stagingPath)
	}
	return rec, nil
}

func (s *Stager) PublishSource(ctx context.Context, id volid.Volume, stagingPath string) (string, bool, error) {
	rec, err := s.staged(id, stagingPath)
	if err != nil {
		return "", false, err
	}
	if rec.Block {
		return rec.Device, true, nil
	}
	return fsPath(stagingPath), false, nil
}

func (s *Stager) ExpandVolume(ctx context.Context, id volid.Volume, stagingPath string, requiredBytes int64) (int64, error) {
	rec, err := s.staged(id, stagingPath)
	if err != nil {
		return 0, err
	}
	a, ok := s.attachers[rec.Strategy]
	if !ok {
		return 0, backend.Errorf(backend.Internal, "attach record names unknown strategy %q", rec.Strategy)
	}
	if err := a.Verify(ctx, rec.Image, stagingPath, rec.attachment); err != nil {
		return 0, backend.Errorf(backend.FailedPrecondition, "volume %s: %v; unstage and stage it again", id, err)
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

// Repair reports a staged volume whose device no longer is its image (a killed rbd-fuse, a
// device renumbered behind the plugin's back). It does not re-attach under a live
// filesystem: publish bind mounts still hold the old one, and a second mount of the same
// filesystem from a new device would corrupt it. A stage that a crash cut short is undone,
// which frees the mappings it may have leaked; stray key files go.
func (s *Stager) Repair(ctx context.Context, id volid.Volume, stagingPath string, _ map[string]string) error {
	rec, err := readRecord(stagingPath)
	if err != nil {
		return err
	}
	if err := ceph.RemoveKeyFiles(stagingPath); err != nil {
		return backend.Errorf(backend.Internal, "%v", err)
	}
	if rec == nil || rec.Volume != id.String() {
		return nil
	}
	if rec.Device == "" {
		return s.undo(ctx, stagingPath, rec)
	}
	if rec, err = s.staged(id, stagingPath); err != nil {
		return err
	}
	a, ok := s.attachers[rec.Strategy]
	if !ok {
		return nil
	}
	if err := a.Verify(ctx, rec.Image, stagingPath, rec.attachment); err != nil {
		return backend.Errorf(backend.FailedPrecondition, "volume %s: %v; the node cannot reach the image any more — delete the pod so the volume is unstaged and staged again", id, err)
	}
	if src := s.mountSource(fsPath(stagingPath)); !rec.Block && src != "" && src != rec.Device {
		return backend.Errorf(backend.FailedPrecondition, "volume %s: %s is mounted from %s, not from its device %s; unstage it", id, fsPath(stagingPath), src, rec.Device)
	}
	return nil
}
