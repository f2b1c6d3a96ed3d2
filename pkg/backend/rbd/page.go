package rbd

import (
	"context"
	"sort"
	"strconv"
	"strings"

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
		places, err := c.placesFrom(conn, from)
		if err != nil {
			return err
		}
		// The page's images are gathered across places (each read in a namespace context
		// of its own), then read pageReaders at a time, so that a page spanning many
		// tenants of a few volumes is not read a tenant after another.
		var found []listed
		var spaces []ioctx
		defer func() {
			for _, io := range spaces {
				io.Destroy()
			}
		}()
		read := func() error {
			rest := 0
			if max > 0 {
				rest = max - len(out)
			}
			vols, err := c.readPage(found, rest)
			out, found = append(out, vols...), nil
			return err
		}
		for _, pl := range places {
			io, err := openPool(conn, pl.pool, pl.tenant)
			if err != nil {
				return err
			}
			spaces = append(spaces, io)
			pl.io = io
			next := imagePrefix // the first csi-vol- name sorts after it
			if pl.key == placeKey(from.Tenant, from.Location) {
				next = imageName(from.Hash)
			}
			for next != "" {
				rest := 0
				if max > 0 {
					rest = max - len(out) - len(found)
				}
				var hashes []string
				hashes, next, err = c.volumeHashesAfter(pl.io, pl.pool, pl.tenant, next, rest)
				if err != nil {
					return err
				}
				for _, h := range hashes {
					found = append(found, listed{pl, h})
				}
				if max > 0 && len(out)+len(found) >= max {
					if err := read(); err != nil || len(out) >= max {
						return err
					}
				}
			}
		}
		return read()
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

// listed is an image a page found in a place's directory, to read.
type listed struct {
	pl   place
	hash string
}

// readPage reads the images found in their order, pageReaders at a time, until max
// volumes (all for 0) are listed; images gone or not this backend's are passed over.
func (c *Controller) readPage(found []listed, max int) ([]*backend.Volume, error) {
	var out []*backend.Volume
	for len(found) > 0 && (max == 0 || len(out) < max) {
		batch := found
		if max > 0 && len(batch) > max-len(out) {
			batch = batch[:max-len(out)]
		}
		found = found[len(batch):]
		vols, err := backend.ReadEach(len(batch), pageReaders, func(i int) (*backend.Volume, error) {
			l := batch[i]
			return c.listedVolume(l.pl.io, l.pl.pool, l.pl.tenant, l.hash)
		})
		out = append(out, vols...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// place is one tenant's namespace in one pool; key orders places as their volume IDs sort.
// io is the namespace's own context, opened once a page walks the place.
type place struct {
	io                ioctx
	pool, tenant, key string
}

func placeKey(tenant, loc string) string { return tenant + ":" + loc + ":" }

// placesFrom lists the namespaces of every pool that holds RBD namespaces, in ID order, from
// the place of from on (all when from is zero).
func (c *Controller) placesFrom(conn cluster, from volid.Volume) ([]place, error) {
	pools, err := conn.ListPools()
	if err != nil {
		return nil, classify(err, "list pools")
	}
	var places []place
	fromKey := placeKey(from.Tenant, from.Location)
	for _, pool := range pools {
		io, nss, err := c.poolNamespaces(conn, pool)
		if err != nil {
			return nil, err
		}
		if io == nil {
			continue
		}
		loc := strconv.FormatInt(io.ID(), 10)
		io.Destroy()
		for _, ns := range nss {
			if k := placeKey(ns, loc); volid.ValidTenant(ns) == nil && (from.Backend == "" || k >= fromKey) {
				places = append(places, place{pool: pool, tenant: ns, key: k})
			}
		}
	}
	sort.Slice(places, func(i, j int) bool { return places[i].key < places[j].key })
	return places, nil
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

// volumeHashesAfter reads a page of the image directory of io's namespace from the first
// name after after: the hashes of its csi-vol- images, sorted, and the name to read on
// from ("" at the directory's end or past the csi-vol- names). A page is about want
// names (want 0: as many as a read brings), so a page of a listing reads about a page of
// names however many images the namespace holds.
func (c *Controller) volumeHashesAfter(io ioctx, pool, ns, after string, want int) ([]string, string, error) {
	n := int64(min(max(want, hashPageMin), hashPageMax))
	names, err := io.ImageNamesAfter(after, n)
	if err != nil {
		return nil, "", c.imageListError(err, pool, ns)
	}
	var hashes []string
	for _, name := range names {
		if !strings.HasPrefix(name, imagePrefix) {
			return hashes, "", nil
		}
		if h := volumeHashOf(name); h != "" {
			hashes = append(hashes, h)
		}
	}
	if int64(len(names)) < n {
		return hashes, "", nil
	}
	return hashes, names[len(names)-1], nil
}

// hashPageMin and hashPageMax bound the names volumeHashesAfter reads at a time: a few
// names past a small page (images gone or of another backend), at most what one omap read
// of the image directory returns cheaply.
const (
	hashPageMin = 64
	hashPageMax = 1024
)

// listedVolume reads one image as a listing reports it, from its header (peekImage): nil
// when it is gone, has no record or belongs to another backend.
func (c *Controller) listedVolume(io ioctx, pool, ns, hash string) (*backend.Volume, error) {
	st, err := peekImage(io, imageName(hash))
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
