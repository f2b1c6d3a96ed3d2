package rbd

import (
	"context"
	"sort"
	"strconv"
	"sync"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// ListVolumesAfter lists a page of the backend's volumes in ID order (tenant, pool ID, hash):
// it reads the namespace lists and the image directories of the places it walks, and opens
// only the images of the page, where ListVolumes opens every image. The first pages, up to
// the last adopted volume, also read the images shiphold did not create (adoptedVolumes).
func (c *Controller) ListVolumesAfter(ctx context.Context, after string, max int) ([]*backend.Volume, error) {
	from, err := volid.ParseVolume(after)
	if err != nil || from.Backend != c.name {
		from = volid.Volume{}
	}
	var out []*backend.Volume
	err = c.storage.Do(ctx, nil, func(conn connection) error {
		if from.Backend == "" || from.Object != "" {
			// Adopted IDs ("a1:") sort before created ones: they come first.
			adopted, err := c.adoptedVolumes(conn, "")
			if err != nil {
				return err
			}
			out = backend.PageOf(adopted, after, max)
			if max > 0 && len(out) >= max {
				return nil
			}
			from = volid.Volume{}
		}
		places, closeAll, err := c.placesFrom(conn, from)
		if err != nil {
			return err
		}
		defer closeAll()
		for _, pl := range places {
			pl.io.SetNamespace(pl.tenant)
			hashes, err := c.volumeHashes(pl.io, pl.pool, pl.tenant)
			if err != nil {
				return err
			}
			if pl.key == placeKey(from.Tenant, from.Location) {
				hashes = hashes[sort.Search(len(hashes), func(i int) bool { return hashes[i] > from.Hash }):]
			}
			rest := 0
			if max > 0 {
				rest = max - len(out)
			}
			vols, err := c.readPage(pl, hashes, rest)
			out = append(out, vols...)
			if err != nil || (max > 0 && len(out) >= max) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// A call past its deadline goes on in the background, still filling out.
		return nil, err
	}
	return out, nil
}

// pageReaders is how many images a page opens at once: each open is a few round trips to
// the OSDs, which a page of hundreds would otherwise wait for one after another.
const pageReaders = 8

// readPage reads the images of hashes in their order, pageReaders at a time, until max
// volumes (all for 0) are listed; images gone or not this backend's are passed over.
func (c *Controller) readPage(pl place, hashes []string, max int) ([]*backend.Volume, error) {
	var out []*backend.Volume
	for len(hashes) > 0 && (max == 0 || len(out) < max) {
		batch := hashes
		if max > 0 && len(batch) > max-len(out) {
			batch = batch[:max-len(out)]
		}
		hashes = hashes[len(batch):]
		vols := make([]*backend.Volume, len(batch))
		errs := make([]error, len(batch))
		slots := make(chan struct{}, pageReaders)
		var wg sync.WaitGroup
		for i, h := range batch {
			wg.Add(1)
			slots <- struct{}{}
			go func() {
				defer func() { <-slots; wg.Done() }()
				vols[i], errs[i] = c.listedVolume(pl.io, pl.pool, pl.tenant, h)
			}()
		}
		wg.Wait()
		for i := range batch {
			if errs[i] != nil {
				return out, errs[i]
			}
			if vols[i] != nil {
				out = append(out, vols[i])
			}
		}
	}
	return out, nil
}

// place is one tenant's namespace in one pool; key orders places as their volume IDs sort.
type place struct {
	io                ioctx
	pool, tenant, key string
}

func placeKey(tenant, loc string) string { return tenant + ":" + loc + ":" }

// placesFrom lists the namespaces of every pool that holds RBD namespaces, in ID order, from
// the place of from on (all when from is zero). closeAll releases the pools' contexts.
func (c *Controller) placesFrom(conn cluster, from volid.Volume) ([]place, func(), error) {
	pools, err := conn.ListPools()
	if err != nil {
		return nil, nil, classify(err, "list pools")
	}
	var places []place
	var ios []ioctx
	closeAll := func() {
		for _, io := range ios {
			io.Destroy()
		}
	}
	fromKey := placeKey(from.Tenant, from.Location)
	for _, pool := range pools {
		io, nss, err := c.poolNamespaces(conn, pool)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if io == nil {
			continue
		}
		ios = append(ios, io)
		loc := strconv.FormatInt(io.ID(), 10)
		for _, ns := range nss {
			if k := placeKey(ns, loc); volid.ValidTenant(ns) == nil && (from.Backend == "" || k >= fromKey) {
				places = append(places, place{io: io, pool: pool, tenant: ns, key: k})
			}
		}
	}
	sort.Slice(places, func(i, j int) bool { return places[i].key < places[j].key })
	return places, closeAll, nil
}

// poolNamespaces opens a pool and lists its RBD namespaces. As in eachNamespace, only the
// configured pool's errors count; another pool without RBD gives a nil context.
func (c *Controller) poolNamespaces(conn cluster, pool string) (ioctx, []string, error) {
	io, err := openPool(conn, pool, "")
	if err != nil {
		if pool == c.cfg.Pool {
			return nil, nil, err
		}
		return nil, nil, nil
	}
	nss, err := io.Namespaces()
	if err != nil {
		io.Destroy()
		if pool == c.cfg.Pool && !isNotFound(err) {
			return nil, nil, classify(err, "list RADOS namespaces of pool "+pool)
		}
		return nil, nil, nil
	}
	return io, nss, nil
}

// volumeHashes lists the hashes of the csi-vol- images in io's namespace, sorted.
func (c *Controller) volumeHashes(io ioctx, pool, ns string) ([]string, error) {
	names, err := io.ImageNames()
	if err != nil {
		if isNotFound(err) || pool != c.cfg.Pool {
			return nil, nil
		}
		return nil, classify(err, "list images in "+pool+"/"+ns)
	}
	var hashes []string
	for _, n := range names {
		if h := volumeHashOf(n); h != "" {
			hashes = append(hashes, h)
		}
	}
	sort.Strings(hashes)
	return hashes, nil
}

// listedVolume reads one image as a listing reports it: nil when it is gone, has no record
// or belongs to another backend.
func (c *Controller) listedVolume(io ioctx, pool, ns, hash string) (*backend.Volume, error) {
	st, err := readImage(io, imageName(hash), false)
	if err != nil {
		if backend.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if !st.hasRecord || st.record.Backend != c.name {
		return nil, nil
	}
	id := volid.Volume{Backend: c.name, Tenant: ns, Location: strconv.FormatInt(io.ID(), 10), Hash: hash}
	if id.Validate() != nil {
		return nil, nil
	}
	return c.volume(id, int64(st.size), st.record, pool), nil
}
