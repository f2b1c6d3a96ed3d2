// Package endpoint opens the two sides of a migration for the engine: a shiphold volume on
// any backend (CephFS through libcephfs, RBD staged with the node plugin's code, Isilon
// over NFSv3 after granting this host the export), or a plain location (nfs://, a path).
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/libcephfs"
	"github.com/shiphold/shiphold/pkg/migrate/nfs3"
	"github.com/shiphold/shiphold/pkg/migrate/posixfs"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Side is one end of a migration, opened.
type Side struct {
	FS migrate.FS
	// Verify reads a target back without sharing FS's cache.
	Verify migrate.FS
	// What describes the side for reports.
	What string
	// Bytes is the volume's capacity, 0 for a plain location.
	Bytes int64
	// Snapshot names the snapshot a source is read from; "" when it is read live.
	Snapshot string
	// Renumbers: the snapshot may show files under fileids of their own (a OneFS snapshot
	// over NFS; the simulator's do), so the engine recognises copies by size and mtime.
	Renumbers bool
	closers   []func() error
}

// Close releases what opening took (mounts, stagings, export grants), last first.
func (s *Side) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

func (s *Side) onClose(f func() error) { s.closers = append(s.closers, f) }

// Env is what opening a volume needs: the driver's config, the backends, this host.
type Env struct {
	Config      *config.Config
	Controllers map[string]backend.Controller
	Stagers     map[string]backend.Stager
	// WorkDir holds staging paths (under the migration's state directory).
	WorkDir string
	// Node is this host as the storage sees it (an Isilon export client).
	Node backend.Node
	// NFSPort and MountPort reach an NFS server off the standard ports (0: portmapper).
	NFSPort, MountPort int
	Connections        int
	// Session names this migration's CephFS clients, so a rerun ends a killed run's sessions.
	Session string
	// Snapshot reads a source volume from a snapshot taken for the run, where its backend
	// has snapshots (CephFS directly, RBD through a clone of it); live otherwise.
	Snapshot bool
	// DryRun changes nothing: no snapshot is taken, a killed run's is left in place.
	DryRun bool
	// snapshotRetry is the first pause between retries of a pending snapshot removal
	// (0: a second); tests shorten it.
	snapshotRetry time.Duration
}

// Role says which end a volume is.
type Role string

// Roles of an opened volume.
const (
	Source Role = "source"
	Target Role = "target"
)

// OpenVolume opens a shiphold volume: read-only as a source, read-write with a separate
// verification reader as a target.
func (env *Env) OpenVolume(ctx context.Context, id volid.Volume, role Role) (*Side, error) {
	bc := env.backend(id.Backend)
	ctrl := env.Controllers[id.Backend]
	if bc == nil || ctrl == nil {
		return nil, fmt.Errorf("volume %s: backend %q is not in the config", id, id.Backend)
	}
	vol, err := ctrl.GetVolume(ctx, id, nil)
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", id, err)
	}
	var s *Side
	switch bc.Kind {
	case backend.KindCephFS:
		s, err = env.openCephFSSource(ctx, ctrl, bc, vol, role)
	case backend.KindRBD:
		s, err = env.openRBDSource(ctx, ctrl, vol, role)
	case backend.KindIsilon:
		s, err = env.openIsilon(ctx, ctrl, vol, role)
	default:
		err = fmt.Errorf("backend %q: kind %q cannot be migrated", bc.Name, bc.Kind)
	}
	if err != nil {
		return nil, err
	}
	s.Bytes = vol.CapacityBytes
	return s, nil
}

func (env *Env) backend(name string) *config.Backend {
	for i := range env.Config.Backends {
		if env.Config.Backends[i].Name == name {
			return &env.Config.Backends[i]
		}
	}
	return nil
}

// openCephFSSource reads a source from a snapshot when asked (the subvolume's .snap through
// libcephfs), live otherwise; a live read still removes a snapshot a killed run left.
func (env *Env) openCephFSSource(ctx context.Context, ctrl backend.Controller, bc *config.Backend, vol *backend.Volume, role Role) (*Side, error) {
	root := vol.Context[cephfs.CtxRootPath]
	if role != Source {
		return env.openCephFS(bc, vol, role, root, "")
	}
	if !env.Snapshot {
		if err := env.dropLeftoverSnapshot(ctx, ctrl, vol.ID); err != nil {
			return nil, err
		}
		return env.openCephFS(bc, vol, role, root, "")
	}
	if root == "" {
		return nil, fmt.Errorf("volume %s: the backend reports no subvolume path", vol.ID)
	}
	return env.fromSnapshot(ctx, ctrl, vol, func(snap *backend.Snapshot) (*Side, error) {
		// A mount cannot start inside .snap: mount the subvolume and read below it.
		base := path.Dir(root)
		return env.openCephFS(bc, vol, role, base, strings.TrimPrefix(cephfs.SnapshotRoot(root, snap.ID), base))
	})
}

func (env *Env) openCephFS(bc *config.Backend, vol *backend.Volume, role Role, root, dir string) (*Side, error) {
	fs, err := config.SectionAs[*cephfs.Config](bc)
	if err != nil {
		return nil, err
	}
	cred, err := ceph.CredentialsFor(fs.Credentials, nil)
	if err != nil {
		return nil, err
	}
	fsName := vol.Context[cephfs.CtxFSName]
	if fsName == "" {
		fsName = fs.FSName
	}
	cfg := libcephfs.Config{Monitors: fs.Monitors, User: cred.UserID, Key: cred.Key, FSName: fsName, Root: root, Dir: dir}
	if cfg.Root == "" {
		return nil, fmt.Errorf("volume %s: the backend reports no subvolume path", vol.ID)
	}
	s := &Side{What: fmt.Sprintf("CephFS volume %s (%s:%s, libcephfs)", vol.ID, fsName, path.Join(root, dir))}
	open := func(which string) (*libcephfs.FS, error) {
		if env.Session != "" {
			cfg.Session = env.Session + "-" + which
		}
		f, err := libcephfs.Open(cfg)
		if err == nil {
			s.onClose(f.Close)
		}
		return f, err
	}
	if s.FS, err = open(string(role)); err != nil {
		return nil, err
	}
	if role == Target {
		if s.Verify, err = open("verify"); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// openRBD stages the volume with the node plugin's code below the work directory: a source
// read-only, a target read-write (made a filesystem if it has none).
func (env *Env) openRBD(ctx context.Context, vol *backend.Volume, role Role) (*Side, error) {
	return env.stageRBD(ctx, vol, string(role), role == Source, role == Target)
}

// stageRBD stages vol at staged-<name> below the work directory and opens its filesystem.
func (env *Env) stageRBD(ctx context.Context, vol *backend.Volume, name string, readOnly, verify bool) (*Side, error) {
	st := env.Stagers[vol.ID.Backend]
	if st == nil {
		return nil, fmt.Errorf("volume %s: no node side for backend %q", vol.ID, vol.ID.Backend)
	}
	staging := filepath.Join(env.WorkDir, "staged-"+name)
	req := &backend.StageRequest{ID: vol.ID, StagingPath: staging, Context: vol.Context}
	if readOnly {
		req.MountFlags = []string{"ro"}
	}
	if err := st.StageVolume(ctx, req); err != nil {
		return nil, fmt.Errorf("stage volume %s: %w", vol.ID, err)
	}
	s := &Side{What: fmt.Sprintf("RBD volume %s (staged at %s)", vol.ID, staging)}
	s.onClose(func() error { return st.UnstageVolume(context.Background(), vol.ID, staging) })
	dir, block, err := st.PublishSource(ctx, vol.ID, staging)
	if err == nil && block {
		err = fmt.Errorf("volume %s is a raw block volume; only filesystems migrate", vol.ID)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.openPath(dir, verify); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Side) openPath(dir string, verify bool) error {
	f, err := posixfs.Open(dir)
	if err != nil {
		return err
	}
	s.FS = f
	s.onClose(f.Close)
	if verify {
		v, err := posixfs.Open(dir, posixfs.DropCache())
		if err != nil {
			return err
		}
		s.Verify = v
		s.onClose(v.Close)
	}
	return nil
}

// openIsilon grants this host the volume's export with root not squashed (a faithful copy
// must read every file, whoever owns it) and reaches it over NFSv3. The backend grants root
// only with read-write access (a read-only client is always squashed), so a source's NFS
// client refuses every write itself. The grant is recorded on the volume like a node's, and
// removed when the side closes. A source is read, when asked, from a OneFS snapshot taken
// for the run, at <export>/.snapshot/<name> as OneFS shows it to NFS clients.
func (env *Env) openIsilon(ctx context.Context, ctrl backend.Controller, vol *backend.Volume, role Role) (*Side, error) {
	if role != Source {
		return env.openIsilonAt(ctx, ctrl, vol, role, nil)
	}
	if !env.Snapshot {
		if err := env.dropLeftoverSnapshot(ctx, ctrl, vol.ID); err != nil {
			return nil, err
		}
		return env.openIsilonAt(ctx, ctrl, vol, role, nil)
	}
	return env.fromSnapshot(ctx, ctrl, vol, func(snap *backend.Snapshot) (*Side, error) {
		s, err := env.openIsilonAt(ctx, ctrl, vol, role, &snap.ID)
		if s != nil {
			s.Renumbers = true
		}
		return s, err
	})
}

// openIsilonAt grants this host the export and mounts it, or the snapshot snap below it.
func (env *Env) openIsilonAt(ctx context.Context, ctrl backend.Controller, vol *backend.Volume, role Role, snap *volid.Snapshot) (*Side, error) {
	pub, ok := ctrl.(backend.Publisher)
	if !ok {
		return nil, fmt.Errorf("backend %q cannot grant export access", vol.ID.Backend)
	}
	node := env.Node
	if node.Address == "" {
		addr, err := isilon.SourceAddressToward(vol.Context[isilon.CtxNFSServer])
		if err != nil {
			return nil, fmt.Errorf("find this host's address toward %s (set --node-address): %w", vol.Context[isilon.CtxNFSServer], err)
		}
		node.Address = addr
	}
	vctx := map[string]string{}
	for k, v := range vol.Context {
		vctx[k] = v
	}
	vctx[isilon.CtxRootClientEnabled] = "true"
	// The migrator reads beside the site (its bulk pass runs while the site does): a grant
	// of its own that no single-node rule refuses.
	pc, err := pub.PublishVolume(ctx, vol.ID, node, backend.PublishAccess{}, vctx, nil)
	if err != nil {
		return nil, fmt.Errorf("grant %s access to volume %s: %w", node.Address, vol.ID, err)
	}
	export := pc[isilon.PubExportPath]
	if snap != nil {
		export = isilon.SnapshotPath(export, *snap)
	}
	s := &Side{What: fmt.Sprintf("Isilon volume %s (nfs://%s%s)", vol.ID, pc[isilon.PubNFSServer], export)}
	s.onClose(func() error { return pub.UnpublishVolume(context.Background(), vol.ID, node, nil) })
	f, err := openGranted(ctx, nfs3.Config{Server: pc[isilon.PubNFSServer], Export: export,
		NFSPort: env.NFSPort, MountPort: env.MountPort, Connections: env.Connections, ReadOnly: role == Source}, snap != nil)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.FS = f
	s.onClose(f.Close)
	if role == Target {
		s.Verify = f
	}
	return s, nil
}

// grantWait bounds how long a fresh export grant may take to reach the NFS server.
const grantWait = 30 * time.Second

// openGranted mounts an export just granted to this host: a server may apply the new
// client list a moment later (nfs-ganesha reloads exports asynchronously), and a snapshot
// just taken may not be found at first either.
func openGranted(ctx context.Context, cfg nfs3.Config, fresh bool) (*nfs3.FS, error) {
	deadline := time.Now().Add(grantWait)
	for {
		f, err := nfs3.Open(cfg)
		if err == nil || time.Now().After(deadline) {
			return f, err
		}
		if msg := err.Error(); !strings.Contains(msg, "ACCES") && !(fresh && strings.Contains(msg, "NOENT")) {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// OpenLocation opens a plain source: nfs://server/export[/dir][?nfsport=N&mountport=N]
// (the longest prefix of the path that the server exports is mounted) or a local path.
func OpenLocation(raw string, connections int) (*Side, error) {
	if !strings.HasPrefix(raw, "nfs://") {
		dir := strings.TrimPrefix(raw, "file://")
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("location %q: want nfs://server/export/path or a directory", raw)
		}
		s := &Side{What: "directory " + dir}
		return s, s.openPath(dir, false)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("location %q: want nfs://server/export/path", raw)
	}
	port := func(k string) int { n, _ := strconv.Atoi(u.Query().Get(k)); return n }
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	var firstErr error
	for i := len(parts); i >= 1; i-- {
		cfg := nfs3.Config{Server: u.Host, Export: "/" + strings.Join(parts[:i], "/"), Root: strings.Join(parts[i:], "/"),
			NFSPort: port("nfsport"), MountPort: port("mountport"), Connections: connections, ReadOnly: true}
		f, err := nfs3.Open(cfg)
		if err == nil {
			s := &Side{FS: f, What: fmt.Sprintf("nfs://%s%s (export %s)", u.Host, u.Path, cfg.Export)}
			s.onClose(f.Close)
			return s, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
