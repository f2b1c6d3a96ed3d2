package cephfs

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// PublishContextRootPath hands the node the subvolume's data directory, which the volume
// context of a volume CreateVolume made does not name (controller.go, recordNew). The
// stager prefers the volume context's, which older volumes and static PVs carry.
const PublishContextRootPath = CtxRootPath

// PublishVolume records on the subvolume that node may use it, read-only or not, and hands
// the node the tenant's identity and the subvolume's data directory. CephFS has no
// storage-side access list; the records make a conflicting republish ALREADY_EXISTS and a
// single-node volume FAILED_PRECONDITION on a second node.
func (c *Controller) PublishVolume(ctx context.Context, id volid.Volume, node backend.Node, access backend.PublishAccess, _, secrets map[string]string) (map[string]string, error) {
	if isDirObject(id.Object) {
		return nil, c.publishDir(ctx, id, node, access, secrets)
	}
	var published func() (map[string]string, error)
	err := c.withSubvolume(ctx, id, secrets, func(s *session, ref volumeRef, meta map[string]string) error {
		published = func() (map[string]string, error) { return c.publishContext(s, id, ref) }
		key, mode, err := backend.NewPublishRecord(id.String(), node, access, meta)
		if err != nil || key == "" {
			return err
		}
		return s.do("record publish of "+ref.String(), func() error {
			return setMetadata(s.conn, ref.fs, ref.group, ref.sub, key, mode)
		})
	})
	if err != nil {
		return nil, err
	}
	return published()
}

// publishContext is the tenant's identity (publishIdentity) and the subvolume's data
// directory, found through the MDS (once per attachment, not per create).
func (c *Controller) publishContext(s *session, id volid.Volume, ref volumeRef) (map[string]string, error) {
	pc, err := c.publishIdentity(s, id, ref)
	if err != nil {
		return nil, err
	}
	path, err := c.subvolumePath(s, ref)
	if err != nil {
		return nil, err
	}
	if pc == nil {
		pc = map[string]string{}
	}
	pc[PublishContextRootPath] = path
	return pc, nil
}

// UnpublishVolume removes node's record, or every node's when node has no name.
func (c *Controller) UnpublishVolume(ctx context.Context, id volid.Volume, node backend.Node, secrets map[string]string) error {
	if isDirObject(id.Object) {
		return c.unpublishDir(ctx, id, node, secrets)
	}
	return c.withSubvolume(ctx, id, secrets, func(s *session, ref volumeRef, meta map[string]string) error {
		for k := range meta {
			if k == backend.PublishRecordKey(node) || node.Name == "" && backend.IsPublishRecordKey(k) {
				if err := s.do("remove publish record of "+ref.String(), func() error {
					return removeMetadata(s.conn, ref.fs, ref.group, ref.sub, k)
				}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// withSubvolume finds a shiphold volume's subvolume and its metadata; NotFound when it is
// not one.
func (c *Controller) withSubvolume(ctx context.Context, id volid.Volume, secrets map[string]string, fn func(*session, volumeRef, map[string]string) error) error {
	if id.Backend != c.name {
		return backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	s, err := c.session(ctx, secrets)
	if err != nil {
		return err
	}
	ref, err := c.ref(s, id)
	if err != nil {
		return err
	}
	var meta map[string]string
	if err := s.do("read subvolume "+ref.String(), func() (err error) {
		meta, err = listMetadata(s.conn, ref.fs, ref.group, ref.sub)
		return err
	}); err != nil {
		return err
	}
	if _, ok := meta[recordKey]; !ok {
		_, found, err := c.recordOnDir(s, ref)
		if err != nil {
			return err
		}
		if !found {
			return backend.Errorf(backend.NotFound, "volume %s does not exist", id)
		}
	}
	return fn(s, ref, meta)
}
