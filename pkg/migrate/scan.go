package migrate

import (
	"context"
	"sort"
	"strings"
	"sync"
)

// forEach runs fn on every item with at most parallel at once; the first error stops it.
func forEach[T any](ctx context.Context, parallel int, items []T, fn func(T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	next := make(chan T)
	for i := 0; i < max(parallel, 1); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				if err := fn(it); err != nil {
					once.Do(func() { ferr = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case next <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if ferr != nil {
		return ferr
	}
	return ctx.Err()
}

// Node is one entry of a scanned tree.
type Node struct {
	Path string
	Attr Attr
	// Link is a symlink's target.
	Link string
	// Xattrs holds the entry's extended attributes that a migration carries.
	Xattrs map[string][]byte
	// Clamped, when set, holds the atime and mtime to store instead of the source's, which
	// the target cannot represent (see PolicyClamp).
	Clamped *[2]Timespec
}

// Times returns the atime and mtime the target is to hold.
func (n *Node) Times() (atime, mtime Timespec) {
	if n.Clamped != nil {
		return n.Clamped[0], n.Clamped[1]
	}
	return n.Attr.Atime, n.Attr.Mtime
}

// Tree is a scanned volume: every entry by path, the root as "".
type Tree struct {
	Nodes map[string]*Node
}

// Sorted returns the paths in lexical order, so that a parent precedes its children.
func (t *Tree) Sorted() []string {
	out := make([]string, 0, len(t.Nodes))
	for p := range t.Nodes {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Carried reports whether an xattr is data a migration copies: CephFS's ceph.* names are
// the storage's own virtual attributes (layouts, quotas, statistics), not the user's.
func Carried(name string) bool { return !strings.HasPrefix(name, "ceph.") }

// scanOptions says what a walk reads beyond lstat.
type scanOptions struct {
	xattrs   bool
	links    bool
	parallel int
}

// scan walks fsys from the root with parallel directory readers.
func scan(ctx context.Context, fsys FS, o scanOptions) (*Tree, error) {
	rootAttr, err := fsys.Lstat("")
	if err != nil {
		return nil, err
	}
	t := &Tree{Nodes: map[string]*Node{"": {Path: "", Attr: rootAttr}}}
	if err := fill(fsys, t.Nodes[""], o); err != nil {
		return nil, err
	}
	w := walker{fsys: fsys, tree: t, sem: make(chan struct{}, max(o.parallel, 1))}
	w.wg.Add(1)
	go w.dir(ctx, "")
	w.wg.Wait()
	if w.err != nil {
		return nil, w.err
	}
	if !o.xattrs && !o.links {
		return t, ctx.Err()
	}
	nodes := make([]*Node, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		if n.Path != "" {
			nodes = append(nodes, n)
		}
	}
	err = forEach(ctx, o.parallel, nodes, func(n *Node) error { return fill(fsys, n, o) })
	return t, err
}

type walker struct {
	fsys FS
	tree *Tree
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

func (w *walker) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *walker) failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

// dir lists one directory and walks its subdirectories in new goroutines.
func (w *walker) dir(ctx context.Context, path string) {
	defer w.wg.Done()
	if ctx.Err() != nil || w.failed() {
		return
	}
	w.sem <- struct{}{}
	ents, err := w.fsys.ReadDir(path)
	nodes := make([]*Node, 0, len(ents))
	for _, e := range ents {
		nodes = append(nodes, &Node{Path: Join(path, e.Name), Attr: e.Attr})
	}
	<-w.sem
	if err != nil {
		w.fail(err)
		return
	}
	w.mu.Lock()
	for _, n := range nodes {
		w.tree.Nodes[n.Path] = n
	}
	w.mu.Unlock()
	for _, n := range nodes {
		if n.Attr.Type == TypeDir {
			w.wg.Add(1)
			go w.dir(ctx, n.Path)
		}
	}
}

// fill reads what lstat does not give: a symlink's target and the xattrs.
func fill(fsys FS, n *Node, o scanOptions) error {
	if o.links && n.Attr.Type == TypeSymlink {
		l, err := fsys.Readlink(n.Path)
		if err != nil {
			return err
		}
		n.Link = l
	}
	if !o.xattrs {
		return nil
	}
	x, err := fsys.Xattrs(n.Path)
	if err != nil {
		return err
	}
	for k := range x {
		if !Carried(k) {
			delete(x, k)
		}
	}
	if len(x) > 0 {
		n.Xattrs = x
	}
	return nil
}
