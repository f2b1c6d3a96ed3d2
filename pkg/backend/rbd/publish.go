package rbd

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// PublishVolume records on the image that node may use it, read-only or not. RBD has no
// storage-side access list; the records make a conflicting republish ALREADY_EXISTS and a
// single-node volume FAILED_PRECONDITION on a second node.
func (c *Controller) PublishVolume(ctx context.Context, id volid.Volume, node backend.Node, access backend.PublishAccess, _, secrets map[string]string) (map[string]string, error) {
	err := c.withImage(ctx, id, secrets, func(_ cluster, img image) error {
		meta, err := img.ListMetadata()
		if err != nil {
			return classify(err, "read publish records of "+id.String())
		}
		key, mode, err := backend.NewPublishRecord(id.String(), node, access, meta)
		if err != nil || key == "" {
			return err
		}
		return classify(img.SetMetadata(key, mode), "record publish of "+id.String())
	})
	if err != nil {
		return nil, err
	}
	return c.publishIdentity(ctx, id, secrets)
}

// UnpublishVolume removes node's record, or every node's when node has no name. When no
// node is left that may hold the image, any client that still has it open is fenced first
// (see fenceStaleClients): that is a forced detach.
func (c *Controller) UnpublishVolume(ctx context.Context, id volid.Volume, node backend.Node, secrets map[string]string) error {
	return c.withImage(ctx, id, secrets, func(conn cluster, img image) error {
		meta, err := img.ListMetadata()
		if err != nil {
			return classify(err, "list publish records of "+id.String())
		}
		var drop []string
		for k := range meta {
			if k == backend.PublishRecordKey(node) || node.Name == "" && backend.IsPublishRecordKey(k) {
				drop = append(drop, k)
			}
		}
		if node.Name == "" || len(backend.PublishedNodes(meta, node)) == 0 {
			if err := fenceStaleClients(conn, img, id); err != nil {
				return err
			}
		}
		for _, k := range drop {
			if err := img.RemoveMetadata(k); err != nil && !isNotFound(err) {
				return classify(err, "remove publish record of "+id.String())
			}
		}
		return nil
	})
}

// withImage opens a shiphold volume's image for writing; NotFound when it is not one.
func (c *Controller) withImage(ctx context.Context, id volid.Volume, secrets map[string]string, fn func(conn cluster, img image) error) error {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	return c.storage.Do(ctx, secrets, func(conn connection) error {
		io, _, err := openVolumePool(conn, id)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		return asNotFound(inImageRW(io, volumeImage(id), func(img image) error {
			if _, err := img.Metadata(recordKey); err != nil {
				if isNotFound(err) {
					return backend.Errorf(backend.NotFound, "volume %s does not exist", id)
				}
				return classify(err, "read record of "+id.String())
			}
			return fn(conn, img)
		}), id)
	})
}
