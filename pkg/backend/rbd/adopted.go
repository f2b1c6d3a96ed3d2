package rbd

import (
	"sort"
	"strconv"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// adoptedVolumes lists the images adopted in place by tenant ("" for all), sorted by ID.
// An adopted image stays wherever it was (a pool's default namespace, any namespace) and
// carries this backend's request record in its metadata, so every image outside
// shiphold's own places is read for one: the cost grows with the images shiphold did not
// create, which a listing of created volumes alone never opens.
func (c *Controller) adoptedVolumes(conn cluster, tenant string) ([]*backend.Volume, error) {
	pools, err := conn.ListPools()
	if err != nil {
		return nil, classify(err, "list pools")
	}
	var out []*backend.Volume
	for _, pool := range pools {
		io, nss, err := c.poolNamespaces(conn, pool)
		if err != nil {
			return nil, err
		}
		if io == nil {
			continue
		}
		io.Destroy()
		vols, err := c.adoptedInPool(conn, pool, append([]string{""}, nss...), tenant)
		if err != nil {
			return nil, err
		}
		out = append(out, vols...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	return out, nil
}

// adoptedInPool reads the records of the images of nss in one pool that are not in
// shiphold's own place (csi-vol-<hash> in a tenant's namespace). The namespaces'
// directories are read pageReaders at a time, each in a context of its own: one after
// another, 1,000 tenants' made the first page of a listing take 3.2 s.
func (c *Controller) adoptedInPool(conn cluster, pool string, nss []string, tenant string) ([]*backend.Volume, error) {
	vols := make([][]*backend.Volume, len(nss))
	errs := make([]error, len(nss))
	backend.Each(len(nss), pageReaders, func(i int) {
		vols[i], errs[i] = c.adoptedInNamespace(conn, pool, nss[i])
	})
	var out []*backend.Volume
	for i := range nss {
		if errs[i] != nil {
			return nil, errs[i]
		}
		for _, v := range vols[i] {
			if tenant == "" || v.ID.Tenant == tenant {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// adoptedInNamespace reads the adopted images of one namespace.
func (c *Controller) adoptedInNamespace(conn cluster, pool, ns string) ([]*backend.Volume, error) {
	io, err := openPool(conn, pool, ns)
	if err != nil {
		if pool != c.cfg.Pool {
			return nil, nil
		}
		return nil, err
	}
	defer io.Destroy()
	names, err := io.ImageNames()
	if err != nil {
		if isNotFound(err) || pool != c.cfg.Pool {
			return nil, nil
		}
		return nil, classify(err, "list images in "+pool+"/"+ns)
	}
	var foreign []string
	for _, name := range names {
		if volumeHashOf(name) == "" || volid.ValidTenant(ns) != nil {
			foreign = append(foreign, name)
		}
	}
	if len(foreign) == 0 {
		return nil, nil
	}
	return c.readAdopted(io, pool, ns, foreign)
}

// readAdopted reads the images of one namespace, pageReaders at a time (each open is a
// few round trips to the OSDs), and returns the adopted ones.
func (c *Controller) readAdopted(io ioctx, pool, ns string, names []string) ([]*backend.Volume, error) {
	return backend.ReadEach(len(names), pageReaders, func(i int) (*backend.Volume, error) {
		return c.adoptedVolume(io, pool, ns, names[i])
	})
}

// adoptedVolume reads one image: nil when it is gone, carries no record of this backend,
// or a record that is not readable (an image shiphold never touched may have anything).
func (c *Controller) adoptedVolume(io ioctx, pool, ns, name string) (*backend.Volume, error) {
	st, err := readImage(io, name, false)
	if err != nil {
		if backend.IsNotFound(err) || backend.CodeOf(err) == backend.Internal {
			return nil, nil
		}
		return nil, err
	}
	if !st.hasRecord || st.record.Backend != c.name {
		return nil, nil
	}
	id, err := volid.Adopted(c.name, st.record.Tenant, strconv.FormatInt(io.ID(), 10), ns+"/"+name)
	if err != nil {
		return nil, nil
	}
	return c.volume(id, int64(st.size), st.record, pool), nil
}
