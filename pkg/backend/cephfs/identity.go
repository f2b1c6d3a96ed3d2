package cephfs

import (
	"context"
	"strings"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Layout xattrs of the tenant's group directory: files made below it land in the tenant's
// RADOS namespace of the data pool, which only the tenant's identity may read.
const (
	layoutNamespace = "ceph.dir.layout.pool_namespace"
	layoutPool      = "ceph.dir.layout.pool"
)

// groupPath is where the mgr volumes module keeps a subvolume group.
func groupPath(group string) string { return "/volumes/" + group }

// tenantNamespace is the RADOS namespace of the data pool that holds a group's files.
func tenantNamespace(group string) string { return group }

// tenantIdentity is the cephx user the tenant's node mounts on this backend use: MDS access
// below the tenant's group, its files' objects in the tenant's namespace, the maps to mount.
func (c *Controller) tenantIdentity(group, dataPool string) (ceph.Identity, error) {
	tenant, _ := tenantOfGroup(c.prefix, group)
	user, err := ceph.IdentityUser(c.name, tenant)
	if err != nil {
		return ceph.Identity{}, err
	}
	ns := tenantNamespace(group)
	return ceph.Identity{
		User: user,
		Caps: map[string]string{
			"mon": "allow r",
			"mds": "allow rw path=" + groupPath(group),
			"osd": "allow rw pool=" + dataPool + " namespace=" + ns,
		},
		KeepOSD: func(g string) bool {
			return strings.HasPrefix(g, "allow rw pool=") && strings.HasSuffix(g, " namespace="+ns) && strings.Count(g, " ") == 3
		},
	}, nil
}

// isolateGroup puts the group's new files in the tenant's namespace and returns the group's
// data pool; ensureGroup calls it before any subvolume of the group is made.
func (c *Controller) isolateGroup(s *session, fs, group string) (string, error) {
	var pool []byte
	err := s.do("set the RADOS namespace of group "+group+" on "+fs, func() error {
		if err := s.conn.SetXattr(fs, groupPath(group), layoutNamespace, []byte(tenantNamespace(group))); err != nil {
			return err
		}
		var err error
		pool, err = s.conn.GetXattr(fs, groupPath(group), layoutPool)
		return err
	})
	return string(pool), err
}

func (c *Controller) ensureIdentity(s *session, group, dataPool string) (cred ceph.Credentials, err error) {
	id, err := c.tenantIdentity(group, dataPool)
	if err != nil {
		return cred, err
	}
	err = s.Do(func() (err error) {
		cred, err = ceph.EnsureIdentity(s.conn, id)
		return err
	})
	return cred, err
}

// publishIdentity hands the node the tenant's identity in the publish context. A subvolume
// whose files are not in the tenant's namespace (made before tenant identities) gets none:
// its node mounts with the node-stage secret its PV names, as before, until it is migrated.
func (c *Controller) publishIdentity(s *session, id volid.Volume, ref volumeRef) (map[string]string, error) {
	info, err := c.info(s, ref)
	if err != nil {
		return nil, err
	}
	if info.PoolNamespace != tenantNamespace(ref.group) {
		klog.InfoS("volume predates tenant identities: its node mounts with its node-stage secret", "volume", id, "poolNamespace", info.PoolNamespace)
		return nil, nil
	}
	cred, err := c.ensureIdentity(s, ref.group, info.DataPool)
	if err != nil {
		return nil, err
	}
	return ceph.PublishContext(cred), nil
}

// dropIdentityIfLast removes the tenant's identity once the group holds no subvolume. It
// reads the group's directory through the MDS, sparing the mgr a command per delete, up to
// its first subvolume: one entry per delete while the tenant has volumes.
func (c *Controller) dropIdentityIfLast(s *session, ref volumeRef) error {
	if _, ok := tenantOfGroup(c.prefix, ref.group); !ok {
		return nil // an adopted subvolume in a group of its own: no tenant identity goes with it
	}
	if b := c.subvolumeBeside(s, ref, ""); b.err != nil || b.left {
		return b.err
	}
	return c.dropIdentity(s, ref)
}

// subvolumesBeside says whether a group holds a subvolume of shiphold's besides one.
type subvolumesBeside struct {
	left bool
	err  error
}

// subvolumeBeside reads whether the group of ref holds a subvolume of shiphold's other
// than except ("" for none) through the MDS, up to the first one.
func (c *Controller) subvolumeBeside(s *session, ref volumeRef, except string) subvolumesBeside {
	var left string
	err := s.do("read the directory of group "+ref.fs+":"+ref.group, func() (err error) {
		left, err = s.conn.FindSubdir(ref.fs, groupPath(ref.group), func(d string) bool {
			_, ok := hashOf(subvolumePrefix, d)
			return ok && d != except
		})
		return err
	})
	if backend.IsNotFound(err) {
		return subvolumesBeside{}
	}
	return subvolumesBeside{left: left != "", err: err}
}

// dropIdentity removes the identity of the tenant of ref's group (none for another group).
func (c *Controller) dropIdentity(s *session, ref volumeRef) error {
	tenant, ok := tenantOfGroup(c.prefix, ref.group)
	if !ok {
		return nil
	}
	user, err := ceph.IdentityUser(c.name, tenant)
	if err != nil {
		return err
	}
	if err := s.Do(func() error { return ceph.RemoveIdentity(s.conn, user) }); err != nil {
		return err
	}
	// The tenant's next first volume makes the identity again; its group stays.
	c.identities.ForgetSuffix("/" + ref.group)
	return nil
}

// RotateTenantKey gives the tenant's identity on this backend a new key and revokes the
// old one; false when the tenant has none here.
func (c *Controller) RotateTenantKey(ctx context.Context, tenant string) (bool, error) {
	user, err := ceph.IdentityUser(c.name, tenant)
	if err != nil {
		return false, err
	}
	s, err := c.session(ctx, nil)
	if err != nil {
		return false, err
	}
	rotated := false
	err = s.Do(func() (err error) {
		rotated, err = ceph.RotateIdentity(s.conn, user)
		return err
	})
	return rotated, err
}
