package cephfs

import (
	"slices"
	"sync"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

// maxListedNames bounds the directory entries dirListings keeps over all its directories,
// each directory counting one more (about 60 bytes each): 10,000 subvolumes in one group
// are 0.6 MB.
const maxListedNames = 1 << 15

// dirsOf lists the subdirectories of dir through the MDS, none when it is absent: the
// listing kept of it while the directory is unchanged, else a readdir.
func (c *Controller) dirsOf(s *session, fs, dir string) ([]string, error) {
	var dirs []string
	err := s.do("list directory "+dir+" of "+fs, func() error {
		v, err := s.conn.DirVersion(fs, dir)
		if err != nil {
			return err
		}
		if names, ok := c.listings.get(fs, dir, v); ok {
			dirs = names
			return nil
		}
		if dirs, err = s.conn.Subdirs(fs, dir); err != nil {
			return err
		}
		c.listings.put(fs, dir, v, dirs)
		return nil
	})
	if backend.IsNotFound(err) {
		return nil, nil
	}
	return dirs, err
}

// dirListings keeps the last listing the controller read of each directory it lists
// (/volumes, the subvolume groups, the adopted index) with the directory's version: a
// listing is read again only once the directory has changed. A readdir of a group of
// 2,000 subvolumes took 0.43-0.51 s, about all of a page's time, and every page read the
// whole group; a statx of it, which the version costs, takes well under a millisecond.
// The least recently used listings are dropped beyond maxListedNames entries.
type dirListings struct {
	mu    sync.Mutex
	by    map[string]*dirListing // key fs + "\x00" + path
	names int
	clock uint64
	max   int
}

type dirListing struct {
	version ceph.DirVersion
	names   []string
	used    uint64
}

func newDirListings(max int) *dirListings {
	return &dirListings{by: map[string]*dirListing{}, max: max}
}

func listingKey(fs, path string) string { return fs + "\x00" + path }

// get answers the listing kept of directory path of fs at version v, a copy the caller
// may change; ok is false when none is kept at that version.
func (l *dirListings) get(fs, path string, v ceph.DirVersion) (names []string, ok bool) {
	if !v.Known() {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.by[listingKey(fs, path)]
	if e == nil || e.version != v {
		return nil, false
	}
	l.clock++
	e.used = l.clock
	return slices.Clone(e.names), true
}

// put keeps names as the listing of directory path of fs at version v, which must have
// been read before the listing (a change between the two leaves a listing that is newer
// than its version says, and is read again), and drops the least recently used listings
// beyond the bound.
func (l *dirListings) put(fs, path string, v ceph.DirVersion, names []string) {
	key := listingKey(fs, path)
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.by[key]; old != nil {
		l.names -= old.cost()
		delete(l.by, key)
	}
	e := &dirListing{version: v, names: slices.Clone(names)}
	if !v.Known() || e.cost() > l.max {
		return
	}
	l.clock++
	e.used = l.clock
	l.by[key] = e
	l.names += e.cost()
	for l.names > l.max {
		var oldest string
		for k, e := range l.by {
			if oldest == "" || e.used < l.by[oldest].used {
				oldest = k
			}
		}
		l.names -= l.by[oldest].cost()
		delete(l.by, oldest)
	}
}

// cost is what a listing counts against the bound: its entries, and one for itself.
func (e *dirListing) cost() int { return len(e.names) + 1 }
