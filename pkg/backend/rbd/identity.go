package rbd

import (
	"context"
	"regexp"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

// rbdGrant is the one OSD grant form a tenant identity holds: profile rbd on one pool and
// the tenant's namespace.
var rbdGrant = regexp.MustCompile(`^profile rbd pool=([^ ,]+) namespace=([^ ,]+)$`)

// tenantIdentity is the cephx user the tenant's node mounts on this backend use: librbd on
// the tenant's RADOS namespace of pool, nothing else. Grants the user already has on the
// same namespace of other pools stay (a tenant with volumes in two pools).
func (c *Controller) tenantIdentity(pool, tenant string) (ceph.Identity, error) {
	user, err := ceph.IdentityUser(c.name, tenant)
	if err != nil {
		return ceph.Identity{}, err
	}
	return ceph.Identity{
		User: user,
		Caps: map[string]string{"mon": "profile rbd", "osd": "profile rbd pool=" + pool + " namespace=" + tenant},
		KeepOSD: func(g string) bool {
			m := rbdGrant.FindStringSubmatch(g)
			return m != nil && m[2] == tenant
		},
	}, nil
}

// ensureIdentity gets or creates the tenant's identity with a grant on pool.
func (c *Controller) ensureIdentity(conn cluster, pool, tenant string) (ceph.Credentials, error) {
	id, err := c.tenantIdentity(pool, tenant)
	if err != nil {
		return ceph.Credentials{}, err
	}
	return ceph.EnsureIdentity(conn, id)
}

// publishIdentity hands the node the tenant's identity in the publish context; a volume
// made before tenant identities gets its tenant's at its first publish. An adopted image
// outside the tenant's namespace gets none (the identity's caps stop at that namespace):
// its node stages it with the node-stage secret its PV names, as before tenant identities,
// until it is migrated into the tenant's place.
func (c *Controller) publishIdentity(ctx context.Context, id volid.Volume, secrets map[string]string) (map[string]string, error) {
	if ns := volumeNamespace(id); ns != id.Tenant {
		klog.InfoS("adopted image outside its tenant's namespace: its node stages it with its node-stage secret", "volume", id, "namespace", ns)
		return nil, nil
	}
	var pc map[string]string
	err := c.storage.Do(ctx, secrets, func(conn connection) error {
		pool, err := poolOf(conn, id.Location)
		if err != nil {
			return err
		}
		cred, err := c.ensureIdentity(conn, pool, id.Tenant)
		pc = ceph.PublishContext(cred)
		return err
	})
	return pc, err
}

// knownIdentity is ensureIdentity for CreateVolume: the mon is asked only the first time
// a tenant gets a volume in a pool (once among concurrent creates), and again after this
// controller removed the identity.
func (c *Controller) knownIdentity(ctx context.Context, conn cluster, pool, tenant string) error {
	_, err := c.identities.Do(ctx, pool+"/"+tenant, func() (string, error) {
		_, err := c.ensureIdentity(conn, pool, tenant)
		return "", err
	})
	return err
}

// startIdentity runs knownIdentity beside the image's creation.
func (c *Controller) startIdentity(ctx context.Context, conn cluster, pool, tenant string) *beside[struct{}] {
	return start(func() (struct{}, error) { return struct{}{}, c.knownIdentity(ctx, conn, pool, tenant) })
}

// removeIdentity removes the tenant's identity, its cephx user (ceph.IdentityUser), and
// forgets it was known on every pool.
func (c *Controller) removeIdentity(conn cluster, user, tenant string) error {
	c.identities.ForgetSuffix("/" + tenant)
	return ceph.RemoveIdentity(conn, user)
}

// dropIdentityIfLast removes the tenant's identity once its last image on this backend is
// gone. A publish racing with it makes the identity again (publishIdentity).
func (c *Controller) dropIdentityIfLast(ctx context.Context, tenant string, secrets map[string]string) error {
	user, err := ceph.IdentityUser(c.name, tenant)
	if err != nil {
		return err
	}
	return c.storage.Do(ctx, secrets, func(conn connection) error {
		left, err := c.imagesLeft(conn, tenant)
		if err != nil || left {
			return err
		}
		return c.removeIdentity(conn, user, tenant)
	})
}

// imagesLeft says whether the tenant has an image on this backend that no DeleteVolume of
// this controller is removing: those are on their way out (the CO let go of them), and two
// deletes of a tenant's last images side by side each see the other's image until it has
// moved to the trash. It reads the csi-vol- names a page at a time (volumeHashesAfter, as a
// listing's page does) and stops at the first image that stays, so only the tenant's last
// deletes read all of them.
func (c *Controller) imagesLeft(conn cluster, tenant string) (bool, error) {
	left := false
	err := c.eachNamespace(conn, tenant, func(io ioctx, pool, ns string) error {
		for next := imagePrefix; next != ""; {
			var hashes []string
			var err error
			if hashes, next, err = c.volumeHashesAfter(io, pool, ns, next, hashPageMin); err != nil {
				return err
			}
			for _, h := range hashes {
				if !c.isDeleting(tenant, pool, imageName(h)) {
					left = true
					return errStopWalk
				}
			}
		}
		return nil
	})
	if err != nil && err != errStopWalk {
		return false, err
	}
	return left, nil
}

// isDeleting says whether a DeleteVolume of this controller is removing the image.
func (c *Controller) isDeleting(tenant, pool, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deleting[tenant+"/"+pool+"/"+name] > 0
}

// markDeleting counts a DeleteVolume of an image in progress until the returned func.
func (c *Controller) markDeleting(tenant, pool, name string) func() {
	key := tenant + "/" + pool + "/" + name
	c.mu.Lock()
	c.deleting[key]++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.deleting[key]--; c.deleting[key] <= 0 {
			delete(c.deleting, key)
		}
		c.mu.Unlock()
	}
}

var errStopWalk = backend.Errorf(backend.Internal, "stop")

// RotateTenantKey gives the tenant's identity on this backend a new key and revokes the
// old one; false when the tenant has none here.
func (c *Controller) RotateTenantKey(ctx context.Context, tenant string) (bool, error) {
	user, err := ceph.IdentityUser(c.name, tenant)
	if err != nil {
		return false, err
	}
	rotated := false
	err = c.storage.Do(ctx, nil, func(conn connection) (err error) {
		rotated, err = ceph.RotateIdentity(conn, user)
		return err
	})
	return rotated, err
}
