package cephfs

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListAllocations is ListVolumes for the tenant quotas: it also lists clones still copying,
// which hold a place. Their size is set when the copy completes, so until then they count
// as a volume of 0 bytes (the controller that started one counts its requested bytes).
// The subvolumes adopted in place count too.
func (c *Controller) ListAllocations(ctx context.Context) ([]*backend.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	out, err := c.adoptedVolumes(s, "")
	if err != nil {
		return nil, err
	}
	err = c.eachSubvolume(s, "", func(id volid.Volume, ref volumeRef) error {
		info, err := c.info(s, ref)
		switch {
		case backend.CodeOf(err) == backend.Pending:
			out = append(out, &backend.Volume{ID: id})
		case backend.IsNotFound(err):
			// Deleted with retained snapshots: no longer a volume.
		case err != nil:
			return err
		default:
			out = append(out, &backend.Volume{ID: id, CapacityBytes: quotaBytes(info)})
		}
		return nil
	})
	return out, err
}
