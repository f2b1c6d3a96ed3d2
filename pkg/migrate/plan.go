package migrate

import (
	"context"
	"fmt"
	"sort"
)

// action is what one non-directory source entry needs on the target.
type action int

const (
	// actCopy writes a regular file's content (and metadata); actMake (re)creates a symlink
	// or special file; actLink links a hard link to its group's anchor; actMeta re-applies
	// metadata only.
	actCopy action = iota + 1
	actMake
	actLink
	actMeta
)

// item is one planned action.
type item struct {
	node *Node
	act  action
	// fresh means the target path must be removed first (it is absent, untrusted, or
	// another inode); otherwise a copy rewrites the known inode in place.
	fresh bool
	// recopy marks target content an earlier run left unfinished.
	recopy bool
	// anchor is the path a hard link is made to; anchorCopied says this run copies it.
	anchor       string
	anchorCopied bool
}

type rename struct{ from, to string }

// plan is everything a run will do, in execution order.
type plan struct {
	renames []rename
	removes []string // target paths, children before parents
	mkdirs  []string // parents before children
	content []*item
	links   []*item
	metas   []*item
	dirs    []*Node // every source directory, children before parents
	bytes   int64
}

// PlanSummary is the plan in numbers, as --dry-run prints it.
type PlanSummary struct {
	SourceEntries int   `json:"source_entries"`
	SourceBytes   int64 `json:"source_bytes"`
	Renames       int   `json:"renames"`
	Removes       int   `json:"removes"`
	Mkdirs        int   `json:"mkdirs"`
	Copies        int   `json:"copies"`
	CopyBytes     int64 `json:"copy_bytes"`
	Recopies      int   `json:"recopies"`
	Creates       int   `json:"creates"`
	Links         int   `json:"links"`
	Metadata      int   `json:"metadata"`
	Unchanged     int   `json:"unchanged"`
}

func (p *plan) summary(src *Tree) PlanSummary {
	s := PlanSummary{SourceEntries: len(src.Nodes), Renames: len(p.renames), Removes: len(p.removes), Mkdirs: len(p.mkdirs),
		Links: len(p.links), Metadata: len(p.metas), CopyBytes: p.bytes}
	for _, n := range src.Nodes {
		if n.Attr.Type == TypeRegular {
			s.SourceBytes += n.Attr.Size
		}
	}
	for _, it := range p.content {
		if it.act == actCopy {
			s.Copies++
		} else {
			s.Creates++
		}
		if it.recopy {
			s.Recopies++
		}
	}
	return s
}

// plan compares source, target and journal. Renames are carried out first (unless a dry
// run), and the target rescanned, so the rest is planned against what is there.
func (e *engine) plan(ctx context.Context) (*plan, error) {
	renames := e.findRenames()
	if len(renames) > 0 && !e.o.DryRun {
		if err := e.applyRenames(renames); err != nil {
			return nil, err
		}
		var err error
		if e.dst, err = scan(ctx, e.o.Target, scanOptions{parallel: e.o.Parallel}); err != nil {
			return nil, fmt.Errorf("rescan the target: %w", err)
		}
	}
	p := &plan{renames: renames}
	e.planDirs(p)
	e.planEntries(p)
	e.planRemoves(p)
	return p, nil
}

// trusted returns the journal record of p when the target holds, at p, a finished copy
// of the same source inode (of the same size and mtime, for a record of a renumbering
// source, unless hard links make the inode's identity matter).
func (e *engine) trusted(p string, s *Node) (*Record, bool) {
	r, t := e.j.Done(p), e.dst.Nodes[p]
	ok := r != nil && t != nil && r.Type == s.Attr.Type && t.Attr.Type == s.Attr.Type &&
		(r.Ino == s.Attr.Ino || r.Renumbered && s.Attr.Nlink <= 1 && r.Size == s.Attr.Size && r.Mtime == s.Attr.Mtime)
	return r, ok
}

// sameContent says whether the source entry still has the content that was copied.
func sameContent(r *Record, s, t *Node) bool {
	switch s.Attr.Type {
	case TypeRegular, TypeSymlink:
		return r.Size == s.Attr.Size && r.Mtime == s.Attr.Mtime && t.Attr.Size == s.Attr.Size
	default:
		return r.Mtime == s.Attr.Mtime && t.Attr.Rdev == s.Attr.Rdev
	}
}

// sameMeta says whether the target's metadata is the source's and the source's xattrs have
// not changed since (any change moves the source's ctime).
func sameMeta(r *Record, s, t *Node) bool {
	a, b := s.Attr, t.Attr
	atime, mtime := s.Times()
	permOK := a.Type == TypeSymlink || a.Perm == b.Perm
	return r.Ctime == a.Ctime && permOK && a.UID == b.UID && a.GID == b.GID && mtime == b.Mtime && atime == b.Atime
}

func (e *engine) planDirs(p *plan) {
	for _, path := range e.src.Sorted() {
		n := e.src.Nodes[path]
		if n.Attr.Type != TypeDir {
			continue
		}
		p.dirs = append(p.dirs, n)
		if path == "" {
			continue
		}
		if t := e.dst.Nodes[path]; t == nil || t.Attr.Type != TypeDir {
			p.mkdirs = append(p.mkdirs, path)
		}
	}
	sort.SliceStable(p.dirs, func(i, j int) bool { return Depth(p.dirs[i].Path) > Depth(p.dirs[j].Path) })
}

// planEntries decides each non-directory: hard-link groups get one anchor that carries the
// inode's content and metadata, and links for the other names.
func (e *engine) planEntries(p *plan) {
	groups := map[uint64][]*Node{}
	for _, path := range e.src.Sorted() {
		n := e.src.Nodes[path]
		switch {
		case n.Attr.Type == TypeDir:
		case n.Attr.Nlink > 1:
			groups[n.Attr.Ino] = append(groups[n.Attr.Ino], n)
		default:
			if it := e.decide(n); it != nil {
				p.add(it)
			}
		}
	}
	for _, g := range groups {
		e.planGroup(p, g)
	}
	sort.Slice(p.content, func(i, j int) bool { return p.content[i].node.Path < p.content[j].node.Path })
	sort.Slice(p.links, func(i, j int) bool { return p.links[i].node.Path < p.links[j].node.Path })
}

func (p *plan) add(it *item) {
	switch it.act {
	case actCopy, actMake:
		p.content = append(p.content, it)
		if it.act == actCopy {
			p.bytes += it.node.Attr.Size
		}
	case actLink:
		p.links = append(p.links, it)
	case actMeta:
		p.metas = append(p.metas, it)
	}
}

// decide plans one entry on its own (or as a group's anchor); nil means unchanged.
func (e *engine) decide(n *Node) *item {
	r, ok := e.trusted(n.Path, n)
	kind := actCopy
	if n.Attr.Type != TypeRegular {
		kind = actMake
	}
	if !ok {
		t := e.dst.Nodes[n.Path]
		recopy := e.j.Started(n.Path) || (t != nil && t.Attr.Type == TypeRegular && n.Attr.Type == TypeRegular)
		return &item{node: n, act: kind, fresh: true, recopy: recopy}
	}
	t := e.dst.Nodes[n.Path]
	switch {
	case !sameContent(r, n, t):
		return &item{node: n, act: kind, fresh: n.Attr.Type != TypeRegular}
	case !sameMeta(r, n, t):
		return &item{node: n, act: actMeta}
	}
	return nil
}

// planGroup picks as anchor a name whose target already holds the inode, else the first.
func (e *engine) planGroup(p *plan, g []*Node) {
	anchor := g[0]
	for _, n := range g {
		if _, ok := e.trusted(n.Path, n); ok {
			anchor = n
			break
		}
	}
	it := e.decide(anchor)
	if it != nil {
		p.add(it)
	}
	freshAnchor := it != nil && it.fresh
	at := e.dst.Nodes[anchor.Path]
	for _, n := range g {
		if n == anchor {
			continue
		}
		t := e.dst.Nodes[n.Path]
		_, ok := e.trusted(n.Path, n)
		if !freshAnchor && ok && at != nil && t.Attr.Ino == at.Attr.Ino {
			continue
		}
		p.add(&item{node: n, act: actLink, fresh: true, anchor: anchor.Path, anchorCopied: it != nil && it.act == actCopy})
	}
}

// planRemoves lists target entries the source no longer has, or has as another type.
func (e *engine) planRemoves(p *plan) {
	for _, path := range e.dst.Sorted() {
		if path == "" {
			continue
		}
		s := e.src.Nodes[path]
		if s == nil && e.o.Target.Limits().reserved(path) {
			continue
		}
		if s == nil || (s.Attr.Type != e.dst.Nodes[path].Attr.Type && (s.Attr.Type == TypeDir || e.dst.Nodes[path].Attr.Type == TypeDir)) {
			p.removes = append(p.removes, path)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(p.removes)))
}

// findRenames pairs source entries new at a path with finished target entries of the same
// source inode that the source no longer has at their old path: the target renames them
// instead of copying again. Directories come first, shallow before deep.
func (e *engine) findRenames() []rename {
	byIno := map[uint64][]*Record{}
	for _, r := range e.j.Records() {
		// A renumbered record's inode number was the source's for that pass alone: a
		// snapshot taken again may give it to another file (the simulator's copies reuse
		// the numbers of the one they replace), which is no rename.
		if e.dst.Nodes[r.Path] == nil || r.Renumbered {
			continue
		}
		if s := e.src.Nodes[r.Path]; s != nil && s.Attr.Ino == r.Ino && s.Attr.Type == r.Type {
			continue
		}
		byIno[r.Ino] = append(byIno[r.Ino], r)
	}
	if len(byIno) == 0 {
		return nil
	}
	var out []rename
	moved := map[string]bool{}
	for _, path := range e.src.Sorted() {
		s := e.src.Nodes[path]
		if path == "" || e.dst.Nodes[path] != nil || underAny(path, moved) {
			continue
		}
		for _, r := range byIno[s.Attr.Ino] {
			if r.Type != s.Attr.Type || moved[r.Path] || isUnder(path, r.Path) || underAny(r.Path, moved) {
				continue
			}
			out = append(out, rename{from: r.Path, to: path})
			moved[r.Path], moved[path] = true, true
			break
		}
	}
	return out
}

func isUnder(path, dir string) bool {
	return len(path) > len(dir) && path[:len(dir)] == dir && path[len(dir)] == '/'
}

// underAny reports whether a parent of path is in set.
func underAny(path string, set map[string]bool) bool {
	for d := Dir(path); d != ""; d = Dir(d) {
		if set[d] {
			return true
		}
	}
	return false
}

// applyRenames moves target entries, creating missing parents (their metadata follows
// with the other directories').
func (e *engine) applyRenames(rs []rename) error {
	for _, r := range rs {
		if err := e.mkdirParents(r.to); err != nil {
			return err
		}
		if err := e.o.Target.Rename(r.from, r.to); err != nil {
			return fmt.Errorf("rename on the target: %w", err)
		}
		if err := e.j.Renamed(r.from, r.to); err != nil {
			return err
		}
		e.res.Renamed++
	}
	return nil
}

func (e *engine) mkdirParents(path string) error {
	var missing []string
	for d := Dir(path); d != ""; d = Dir(d) {
		if _, err := e.o.Target.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := e.o.Target.Mkdir(missing[i], 0o700); err != nil && !IsExist(err) {
			return err
		}
	}
	return nil
}
