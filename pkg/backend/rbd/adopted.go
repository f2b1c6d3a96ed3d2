package rbd

import (
	"sort"
	"strconv"
	"sync"

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
		vols, err := c.adoptedInPool(io, pool, append([]string{""}, nss...), tenant)
		io.Destroy()
		if err != nil {
			return nil, err
		}
		out = append(out, vols...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	return out, nil
}

// adoptedInPool reads the records of the images of nss in one pool that are not in
// shiphold's own place (csi-vol-<hash> in a tenant's namespace).
func (c *Controller) adoptedInPool(io ioctx, pool string, nss []string, tenant string) ([]*backend.Volume, error) {
	var out []*backend.Volume
	for _, ns := range nss {
		io.SetNamespace(ns)
		names, err := io.ImageNames()
		if err != nil {
			if isNotFound(err) || pool != c.cfg.Pool {
				continue
			}
			return nil, classify(err, "list images in "+pool+"/"+ns)
		}
		var foreign []string
		for _, name := range names {
			if volumeHashOf(name) == "" || volid.ValidTenant(ns) != nil {
				foreign = append(foreign, name)
			}
		}
		vols, err := c.readAdopted(io, pool, ns, foreign)
		if err != nil {
			return nil, err
		}
		for _, v := range vols {
			if tenant == "" || v.ID.Tenant == tenant {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// readAdopted reads the images of one namespace, pageReaders at a time (each open is a
// few round trips to the OSDs), and returns the adopted ones.
func (c *Controller) readAdopted(io ioctx, pool, ns string, names []string) ([]*backend.Volume, error) {
	vols := make([]*backend.Volume, len(names))
	errs := make([]error, len(names))
	slots := make(chan struct{}, pageReaders)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			vols[i], errs[i] = c.adoptedVolume(io, pool, ns, name)
		}()
	}
	wg.Wait()
	var out []*backend.Volume
	for i := range names {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if vols[i] != nil {
			out = append(out, vols[i])
		}
	}
	return out, nil
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
