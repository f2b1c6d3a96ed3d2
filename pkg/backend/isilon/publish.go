package isilon

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Publish context keys.
const (
	PubNFSServer  = CtxNFSServer
	PubExportPath = CtxExportPath
)

// A node's ID carries its address (name@address), and the address can change while the
// node keeps its name (a new DHCP lease, a moved NIC). So each publish records on the
// volume directory which addresses it granted to which node (like the Ceph backends'
// publish records), and unpublish removes exactly those: never only the address the node
// ID happens to carry now. A publish from a new address replaces the node's old grant.

// grantPrefix starts the attribute of each node's grant; the rest is a hash of the node
// name (attribute names are stored upper-cased, node names are not).
const grantPrefix = "SHIPHOLD_NODE_"

// grant is what one node was given on a volume's export.
type grant struct {
	Node  string   `json:"node"`
	Addrs []string `json:"addrs"`
	Mode  string   `json:"mode"` // backend.PublishMode
}

func grantKey(node string) string { return grantPrefix + strings.ToUpper(volid.Hash(node)) }

// grants reads the grant records among a directory's attributes, by node name.
func grants(attrs map[string]string) map[string]*grant {
	out := map[string]*grant{}
	for k, v := range attrs {
		var g grant
		if strings.HasPrefix(k, grantPrefix) && json.Unmarshal([]byte(v), &g) == nil && g.Node != "" {
			out[g.Node] = &g
		}
	}
	return out
}

func (g grant) value() string {
	b, _ := json.Marshal(g)
	return string(b)
}

// heldByOthers reports whether a node other than name was granted addr.
func heldByOthers(all map[string]*grant, name, addr string) bool {
	for n, g := range all {
		if n != name && slices.Contains(g.Addrs, addr) {
			return true
		}
	}
	return false
}

// PublishVolume grants the node's address access to the export: clients for read-write,
// read_only_clients for read-only, and root_clients too when the class enables it. The
// grant is recorded on the volume first (with the node's earlier addresses, so a crash
// leaves nothing unaccounted), then the export gets the address and loses the node's
// earlier ones, then the record keeps only the address. Publishing again is a no-op; the
// other access mode for the same node is AlreadyExists; a second node of a single-node
// volume is FailedPrecondition.
func (c *Controller) PublishVolume(ctx context.Context, id volid.Volume, node backend.Node, access backend.PublishAccess, volumeContext, secrets map[string]string) (map[string]string, error) {
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
	z, dir, err := c.place(id)
	if err != nil {
		return nil, err
	}
	server, err := nfsServerOf(z, volumeContext, CtxNFSServer)
	if err != nil {
		return nil, err
	}
	err = c.storage.Do(ctx, secrets, func(a client) error {
		attrs, found, err := recordAndExport(ctx, a, z, dir)
		if err != nil {
			if backend.IsNotFound(err) {
				return backend.Errorf(backend.NotFound, "isilon: volume %s does not exist (no directory %s)", id, dir)
			}
			return err
		}
		e, err := c.settleExport(ctx, a, z, dir, found)
		if err != nil {
			return err
		}
		return c.grant(ctx, a, id, dir, e, grants(attrs), node, access, root)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{PubNFSServer: server, PubExportPath: dir}, nil
}

func (c *Controller) grant(ctx context.Context, a array, id volid.Volume, dir string, e *Export, all map[string]*grant, node backend.Node, access backend.PublishAccess, root bool) error {
	readOnly := access.ReadOnly
	addr, mode := node.Address, backend.PublishMode(readOnly)
	old := all[node.Name]
	if old != nil {
		if err := backend.CheckRepublish(id.String(), node, old.Mode, readOnly); err != nil {
			return err
		}
	} else if err := checkUnrecorded(id, *e, node, readOnly); err != nil {
		return err
	} else if err := backend.CheckSingleNode(id.String(), node, access, otherHolders(all, *e, node)); err != nil {
		return err
	}
	intent := grant{Node: node.Name, Addrs: []string{addr}, Mode: mode}
	var gone []string
	if old != nil {
		for _, a := range old.Addrs {
			if a != addr {
				intent.Addrs = append(intent.Addrs, a)
				if !heldByOthers(all, node.Name, a) {
					gone = append(gone, a)
				}
			}
		}
	}
	if old == nil || old.value() != intent.value() {
		if err := a.SetAttrs(ctx, dir, map[string]string{grantKey(node.Name): intent.value()}); err != nil {
			return err
		}
	}
	next := withoutClients(*e, gone)
	if readOnly {
		next.ReadOnlyClients = addOnce(next.ReadOnlyClients, addr)
	} else {
		next.Clients = addOnce(next.Clients, addr)
		if root {
			next.RootClients = addOnce(next.RootClients, addr)
		}
	}
	if !sameClients(*e, next) {
		if err := a.UpdateExportClients(ctx, next); err != nil {
			return err
		}
	}
	if len(intent.Addrs) > 1 {
		final := grant{Node: node.Name, Addrs: []string{addr}, Mode: mode}
		return a.SetAttrs(ctx, dir, map[string]string{grantKey(node.Name): final.value()})
	}
	return nil
}

// recordAndExport reads a volume directory's attributes (its grant records) and looks its
// export up, at once: one round trip to the array instead of two. A missing directory is
// the error, whatever the export lookup found.
func recordAndExport(ctx context.Context, a array, z accessZone, dir string) (map[string]string, *Export, error) {
	var attrs map[string]string
	var e *Export
	attrsErr, exportErr := atOnce(func() error {
		var err error
		attrs, err = a.Attrs(ctx, dir)
		return err
	}, func() error {
		var err error
		e, err = a.ExportOf(ctx, z.name, dir)
		return err
	})
	if attrsErr != nil {
		return nil, nil, attrsErr
	}
	return attrs, e, exportErr
}

// checkUnrecorded applies the mode conflict rule to a node published before grant records
// (by its address in the client lists).
func checkUnrecorded(id volid.Volume, e Export, node backend.Node, readOnly bool) error {
	addr := node.Address
	rw := slices.Contains(e.Clients, addr) || slices.Contains(e.ReadWriteClients, addr) || slices.Contains(e.RootClients, addr)
	ro := slices.Contains(e.ReadOnlyClients, addr)
	switch {
	case readOnly && rw:
		return backend.CheckRepublish(id.String(), node, backend.PublishMode(false), true)
	case !readOnly && ro:
		return backend.CheckRepublish(id.String(), node, backend.PublishMode(true), false)
	}
	return nil
}

// UnpublishVolume removes what the node was granted: the addresses of its record (and the
// address its ID carries now), unless another node's record holds them; every grant when
// the node is unnamed. The placeholder stays, so the export never becomes open to all.
func (c *Controller) UnpublishVolume(ctx context.Context, id volid.Volume, node backend.Node, secrets map[string]string) error {
	z, dir, err := c.place(id)
	if err != nil {
		return err
	}
	return c.storage.Do(ctx, secrets, func(a client) error {
		attrs, e, err := recordAndExport(ctx, a, z, dir)
		if backend.IsNotFound(err) {
			return nil // DeleteVolume removed the export first
		}
		if err != nil {
			return err
		}
		all := grants(attrs)
		if e != nil {
			gone := revoked(all, node)
			if node.Name == "" && node.Address == "" {
				gone = allClients(*e)
			}
			if next := withoutClients(*e, gone); !sameClients(*e, next) {
				if err := a.UpdateExportClients(ctx, next); err != nil && !backend.IsNotFound(err) {
					return err
				}
			}
		}
		var keys []string
		for name := range all {
			if node.Name == "" || name == node.Name {
				keys = append(keys, grantKey(name))
			}
		}
		return a.RemoveAttrs(ctx, dir, keys)
	})
}

// otherHolders lists who else may use the export: the other nodes the grant records name,
// and any client address no record accounts for (a grant made before records, or by hand),
// since that one may be another node too.
func otherHolders(all map[string]*grant, e Export, node backend.Node) []string {
	var out []string
	for n := range all {
		if n != node.Name {
			out = append(out, n)
		}
	}
	for _, cl := range allClients(e) {
		if cl != node.Address && !heldByOthers(all, "", cl) {
			out = append(out, cl)
		}
	}
	return out
}

// revoked is the addresses an unpublish of node removes.
func revoked(all map[string]*grant, node backend.Node) []string {
	var out []string
	mine := []string{node.Address}
	if g := all[node.Name]; g != nil {
		mine = append(mine, g.Addrs...)
	}
	for _, a := range mine {
		if a != "" && !heldByOthers(all, node.Name, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// withoutClients drops addrs from every client list and keeps the placeholder.
func withoutClients(e Export, addrs []string) Export {
	drop := func(l []string) []string {
		return slices.DeleteFunc(slices.Clone(l), func(s string) bool {
			return s != NoAccessClient && slices.Contains(addrs, s)
		})
	}
	next := Export{ID: e.ID, Zone: e.Zone, Path: e.Path, Clients: drop(e.Clients), RootClients: drop(e.RootClients),
		ReadWriteClients: drop(e.ReadWriteClients), ReadOnlyClients: drop(e.ReadOnlyClients)}
	next.ReadOnlyClients = addOnce(next.ReadOnlyClients, NoAccessClient)
	return next
}

// StaleClient is an export client that no grant record accounts for: added by hand, or
// left by a driver version before grant records (republishing records it).
type StaleClient struct {
	Volume   volid.Volume
	ExportID int
	Client   string
}

// StaleClients lists, for every volume of the backend, the export clients no grant record
// accounts for (the placeholder aside). shipholdctl shows them to an admin.
func (c *Controller) StaleClients(ctx context.Context, secrets map[string]string) ([]StaleClient, error) {
	exports, err := c.exportClients(ctx, secrets)
	if err != nil {
		return nil, err
	}
	var out []StaleClient
	for _, e := range exports {
		for _, cl := range e.Stale {
			out = append(out, StaleClient{Volume: e.Volume, ExportID: e.ExportID, Client: cl})
		}
	}
	return out, nil
}

// allClients is every client of an export once, the placeholder excluded.
func allClients(e Export) []string {
	var out []string
	for _, l := range [][]string{e.Clients, e.RootClients, e.ReadWriteClients, e.ReadOnlyClients} {
		for _, cl := range l {
			if cl != NoAccessClient && !slices.Contains(out, cl) {
				out = append(out, cl)
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
