package rbd

import (
	"context"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// PublishVolume records on the image that node may use it, read-only or not. RBD has no
// storage-side access list; the record makes a conflicting republish ALREADY_EXISTS.
func (c *Controller) PublishVolume(ctx context.Context, id volid.Volume, node backend.Node, readOnly bool, _, secrets map[string]string) (map[string]string, error) {
	err := c.withImage(ctx, id, secrets, func(img *librbd.Image) error {
		key := backend.PublishRecordKey(node)
		recorded, err := img.GetMetadata(key)
		if err != nil && !isNotFound(err) {
			return classify(err, "read publish record of "+id.String())
		}
		if err := backend.CheckRepublish(id.String(), node, recorded, readOnly); err != nil || recorded != "" {
			return err
		}
		return classify(img.SetMetadata(key, backend.PublishMode(readOnly)), "record publish of "+id.String())
	})
	return nil, err
}

// UnpublishVolume removes node's record, or every node's when node has no name.
func (c *Controller) UnpublishVolume(ctx context.Context, id volid.Volume, node backend.Node, secrets map[string]string) error {
	return c.withImage(ctx, id, secrets, func(img *librbd.Image) error {
		if node.Name == "" {
			return classify(dropPublishRecords(img), "remove publish records of "+id.String())
		}
		if err := img.RemoveMetadata(backend.PublishRecordKey(node)); err != nil && !isNotFound(err) {
			return classify(err, "remove publish record of "+id.String())
		}
		return nil
	})
}

// dropPublishRecords removes every node's publish record from the image.
func dropPublishRecords(img *librbd.Image) error {
	all, err := img.ListMetadata()
	if err != nil {
		return err
	}
	for k := range all {
		if !backend.IsPublishRecordKey(k) {
			continue
		}
		if err := img.RemoveMetadata(k); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

// withImage opens a shiphold volume's image for writing; NotFound when it is not one.
func (c *Controller) withImage(ctx context.Context, id volid.Volume, secrets map[string]string, fn func(img *librbd.Image) error) error {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	return c.run(ctx, secrets, func(conn *rados.Conn) error {
		io, _, err := openVolumePool(conn, id)
		if err != nil {
			return asNotFound(err, id)
		}
		defer io.Destroy()
		img, err := librbd.OpenImage(io, imageName(id.Hash), librbd.NoSnapshot)
		if err != nil {
			return asNotFound(classify(err, "open image of "+id.String()), id)
		}
		defer img.Close()
		if _, err := img.GetMetadata(recordKey); err != nil {
			if isNotFound(err) {
				return backend.Errorf(backend.NotFound, "volume %s does not exist", id)
			}
			return classify(err, "read record of "+id.String())
		}
		return fn(img)
	})
}
