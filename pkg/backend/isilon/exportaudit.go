package isilon

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
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
		dir := c.VolumeDir(v.ID)
		err := c.conn.do(ctx, secrets, func(a array) error {
			e, err := a.ExportOf(ctx, dir)
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
