package isilon

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

// StandInEnv, when set to the directory that a OneFS simulator serves as /ifs, makes
// NewStager use LoopbackNFS instead of mount -t nfs. TESTS ONLY: this machine's kernel has
// no NFS client, and the simulator's tree is a local directory.
const StandInEnv = "SHIPHOLD_NFS_STANDIN"

// LoopbackNFS is a TEST-ONLY stand-in for mount -t nfs against the OneFS simulator. Like an
// NFS server it refuses a mount unless the export of the path lists this node's address
// (asked through the Platform API, as any client would); then it bind-mounts the export's
// real directory (Root + path below /ifs), read-only when the node is only in
// read_only_clients or "ro" is asked. NFS-specific options are dropped.
type LoopbackNFS struct {
	// Interface is the host mounter: bind mounts, unmounts and the mount table.
	mount.Interface
	// Root is the real directory the simulator serves as /ifs.
	Root string
	// exportOf finds the export of an /ifs path in the zone whose tree holds it.
	exportOf func(ctx context.Context, dir string) (*Export, error)
	// clientAddress is the address the NFS server would see for this node.
	clientAddress func(server string) (string, error)
}

// NewLoopbackNFS builds the stand-in for a backend, querying its Platform API with the
// backend's credentialsFile.
func NewLoopbackNFS(cfg *config.Backend, root string) (*LoopbackNFS, error) {
	ic, err := config.SectionAs[*Config](cfg)
	if err != nil {
		return nil, err
	}
	conn, err := newConnector(ic)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", StandInEnv, root, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s=%q is not a directory", StandInEnv, root)
	}
	storage := conn.storage()
	return &LoopbackNFS{
		Interface: mount.New(""),
		Root:      abs,
		exportOf: func(ctx context.Context, dir string) (*Export, error) {
			var e *Export
			err := storage.Do(ctx, nil, func(a client) error {
				var err error
				// The mount is served by the zone whose tree holds dir (its SmartConnect name).
				z, ok := zoneOfPath(ic, dir)
				if !ok {
					z = defaultZone(ic)
				}
				e, err = a.ExportOf(ctx, z.name, dir)
				return err
			})
			return e, err
		},
		clientAddress: SourceAddressToward,
	}, nil
}

func (m *LoopbackNFS) Mount(source, target, fstype string, options []string) error {
	if fstype != "nfs" && fstype != "nfs4" {
		return m.Interface.Mount(source, target, fstype, options)
	}
	i := strings.LastIndex(source, ":/")
	if i < 0 {
		return fmt.Errorf("stand-in NFS: source %q is not server:/path", source)
	}
	server, dir := source[:i], path.Clean(source[i+1:])
	rel, ok := strings.CutPrefix(dir, "/ifs/")
	if !ok {
		return fmt.Errorf("stand-in NFS: %s is not below /ifs", dir)
	}
	addr, err := m.clientAddress(server)
	if err != nil {
		return fmt.Errorf("stand-in NFS: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := m.exportOf(ctx, dir)
	if err != nil {
		return err
	}
	if e == nil {
		return backend.Errorf(backend.NotFound, "stand-in NFS: mount.nfs: %s: no export of %s", server, dir)
	}
	rw := slices.Contains(e.Clients, addr) || slices.Contains(e.ReadWriteClients, addr) || slices.Contains(e.RootClients, addr)
	ro := slices.Contains(e.ReadOnlyClients, addr)
	if !rw && !ro {
		return backend.Errorf(backend.FailedPrecondition, "stand-in NFS: mount.nfs: access denied by server while mounting %s: export %d does not list client %s (ControllerPublishVolume grants it)", source, e.ID, addr)
	}
	opts := []string{"bind"}
	if !rw || slices.Contains(options, "ro") {
		opts = append(opts, "ro")
	}
	return m.Interface.Mount(filepath.Join(m.Root, filepath.FromSlash(rel)), target, "", opts)
}

func (m *LoopbackNFS) MountSensitive(source, target, fstype string, options, _ []string) error {
	return m.Mount(source, target, fstype, options)
}

func (m *LoopbackNFS) MountSensitiveWithoutSystemd(source, target, fstype string, options, _ []string) error {
	return m.Mount(source, target, fstype, options)
}

func (m *LoopbackNFS) MountSensitiveWithoutSystemdWithMountFlags(source, target, fstype string, options, _, _ []string) error {
	return m.Mount(source, target, fstype, options)
}
