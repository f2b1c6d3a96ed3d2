package isilon

import (
	"context"
	"slices"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

var _ backend.ExportAuditor = (*Controller)(nil)

// ExportClients reports the clients of every volume's export, and which of them no grant
// record accounts for; volumes without an export are left out.
func (c *Controller) ExportClients(ctx context.Context) ([]backend.ExportClients, error) {
	return c.exportClients(ctx, nil)
}

func (c *Controller) exportClients(ctx context.Context, secrets map[string]string) ([]backend.ExportClients, error) {
	vols, err := c.ListVolumes(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []backend.ExportClients
	for _, v := range vols {
		z, dir, err := c.place(v.ID)
		if err != nil {
			return nil, err
		}
		err = c.storage.Do(ctx, secrets, func(a client) error {
			e, err := a.ExportOf(ctx, z.name, dir)
			if err != nil || e == nil {
				return err
			}
			attrs, err := a.Attrs(ctx, dir)
			if err != nil {
				return err
			}
			all := grants(attrs)
			ec := backend.ExportClients{Volume: v.ID, ExportID: e.ID, Clients: allClients(*e)}
			for _, cl := range ec.Clients {
				if !heldByOthers(all, "", cl) {
					ec.Stale = append(ec.Stale, cl)
				}
			}
			out = append(out, ec)
			return nil
		})
		// A volume deleted while we list is no longer exported: not an error.
		if err != nil && !backend.IsNotFound(err) {
			return nil, err
		}
	}
	return out, nil
}

// RemoveExportClient takes addr off the volume's export (the placeholder stays, so the
// export never opens to all) and off the grant records that name it: shipholdctl gc's
// removal of a client no node has. Absent volume, export or address is success.
func (c *Controller) RemoveExportClient(ctx context.Context, id volid.Volume, addr string) error {
	z, dir, err := c.place(id)
	if err != nil {
		return err
	}
	return c.storage.Do(ctx, nil, func(a client) error {
		attrs, err := a.Attrs(ctx, dir)
		if backend.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		e, err := a.ExportOf(ctx, z.name, dir)
		if err != nil {
			return err
		}
		if e != nil {
			if next := withoutClients(*e, []string{addr}); !sameClients(*e, next) {
				if err := a.UpdateExportClients(ctx, next); err != nil && !backend.IsNotFound(err) {
					return err
				}
			}
		}
		return dropGrantAddr(ctx, a, dir, grants(attrs), addr)
	})
}

// dropGrantAddr rewrites the grants that name addr without it, removing those left empty.
func dropGrantAddr(ctx context.Context, a array, dir string, all map[string]*grant, addr string) error {
	var gone []string
	kept := map[string]string{}
	for name, g := range all {
		if !slices.Contains(g.Addrs, addr) {
			continue
		}
		g.Addrs = slices.DeleteFunc(slices.Clone(g.Addrs), func(s string) bool { return s == addr })
		if len(g.Addrs) == 0 {
			gone = append(gone, grantKey(name))
		} else {
			kept[grantKey(name)] = g.value()
		}
	}
	if len(kept) > 0 {
		if err := a.SetAttrs(ctx, dir, kept); err != nil {
			return err
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return a.RemoveAttrs(ctx, dir, gone)
}
