package isilon

import (
	"context"
	"slices"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Publish context keys.
const (
	PubNFSServer  = CtxNFSServer
	PubExportPath = CtxExportPath
)

// PublishVolume adds the node's address to the export: clients for read-write,
// read_only_clients for read-only, and root_clients too when the class enables it.
// Publishing again is a no-op; the opposite access mode for the same node is AlreadyExists.
func (c *Controller) PublishVolume(ctx context.Context, id volid.Volume, node backend.Node, access backend.PublishAccess, volumeContext, secrets map[string]string) (map[string]string, error) {
	readOnly := access.ReadOnly
	if node.Address == "" {
		return nil, backend.Errorf(backend.InvalidArgument, "isilon: node %q has no address; node IDs must be name@address", node.Name)
	}
	if node.Address == NoAccessClient {
		return nil, backend.Errorf(backend.InvalidArgument, "isilon: node address %s is the export placeholder and cannot be granted access", node.Address)
	}
	root, err := parseRootClient(map[string]string{ParamRootClientEnabled: volumeContext[CtxRootClientEnabled]})
	if err != nil {
		return nil, err
	}
	dir := c.VolumeDir(id)
	err = c.conn.do(ctx, secrets, func(a array) error {
		if _, err := a.Attrs(ctx, dir); err != nil {
			if backend.IsNotFound(err) {
				return backend.Errorf(backend.NotFound, "isilon: volume %s does not exist (no directory %s)", id, dir)
			}
			return err
		}
		e, err := c.ensureExport(ctx, a, dir)
		if err != nil {
			return err
		}
		addr := node.Address
		rw := slices.Contains(e.Clients, addr) || slices.Contains(e.ReadWriteClients, addr) || slices.Contains(e.RootClients, addr)
		ro := slices.Contains(e.ReadOnlyClients, addr)
		if !rw && !ro {
			if err := backend.CheckSingleNode(id.String(), node, access, otherClients(*e, addr)); err != nil {
				return err
			}
		}
		switch {
		case readOnly && rw:
			return backend.Errorf(backend.AlreadyExists, "isilon: volume %s is published read-write to node %s; unpublish it before publishing read-only", id, node.Name)
		case !readOnly && ro:
			return backend.Errorf(backend.AlreadyExists, "isilon: volume %s is published read-only to node %s; unpublish it before publishing read-write", id, node.Name)
		}
		next := *e
		if readOnly {
			next.ReadOnlyClients = addOnce(next.ReadOnlyClients, addr)
		} else {
			next.Clients = addOnce(next.Clients, addr)
			if root {
				next.RootClients = addOnce(next.RootClients, addr)
			}
		}
		next.ReadOnlyClients = addOnce(next.ReadOnlyClients, NoAccessClient)
		if sameClients(*e, next) {
			return nil
		}
		return a.UpdateExportClients(ctx, next)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{PubNFSServer: c.cfg.NFSServer, PubExportPath: dir}, nil
}

// UnpublishVolume removes the node's address from every client list (every node when the
// node is unnamed). The placeholder stays, so the export never becomes open to all hosts.
func (c *Controller) UnpublishVolume(ctx context.Context, id volid.Volume, node backend.Node, secrets map[string]string) error {
	dir := c.VolumeDir(id)
	return c.conn.do(ctx, secrets, func(a array) error {
		e, err := a.ExportOf(ctx, dir)
		if err != nil || e == nil {
			return err
		}
		drop := func(l []string) []string {
			return slices.DeleteFunc(slices.Clone(l), func(s string) bool {
				return s != NoAccessClient && (node.Address == "" || s == node.Address)
			})
		}
		next := Export{ID: e.ID, Path: e.Path, Clients: drop(e.Clients), RootClients: drop(e.RootClients),
			ReadWriteClients: drop(e.ReadWriteClients), ReadOnlyClients: drop(e.ReadOnlyClients)}
		next.ReadOnlyClients = addOnce(next.ReadOnlyClients, NoAccessClient)
		if sameClients(*e, next) {
			return nil
		}
		err = a.UpdateExportClients(ctx, next)
		if backend.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// otherClients lists the addresses other than addr that an export grants access to.
func otherClients(e Export, addr string) []string {
	var out []string
	for _, l := range [][]string{e.Clients, e.ReadWriteClients, e.RootClients, e.ReadOnlyClients} {
		for _, c := range l {
			if c != addr && c != NoAccessClient && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

func addOnce(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(slices.Clone(l), s)
}

func sameClients(a, b Export) bool {
	return slices.Equal(a.Clients, b.Clients) && slices.Equal(a.RootClients, b.RootClients) &&
		slices.Equal(a.ReadWriteClients, b.ReadWriteClients) && slices.Equal(a.ReadOnlyClients, b.ReadOnlyClients)
}
