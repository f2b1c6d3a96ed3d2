package migrate

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxAttempts bounds how often a file that changes while read is copied again in one run.
const maxAttempts = 3

// execute carries out a plan: removals, directories, content, links, metadata, and last the
// directories' own metadata, deepest first, after everything inside them is in place.
func (e *engine) execute(ctx context.Context, p *plan) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.p.setTotals(int64(len(p.content)+len(p.links)), p.bytes)
	e.inline = e.startInlineVerify(ctx)
	c := e.startCommitter(cancel)
	err := e.executeSteps(ctx, p)
	if cerr := c.stop(); err == nil {
		err = cerr
	}
	e.inline.stop()
	if err != nil {
		return err
	}
	return e.j.Compact()
}

func (e *engine) executeSteps(ctx context.Context, p *plan) error {
	if err := e.removeAll(p.removes); err != nil {
		return err
	}
	if err := byDepth(ctx, e.o.Parallel, p.mkdirs, func(d string) string { return d }, false, func(d string) error {
		if err := e.o.Target.Mkdir(d, 0o700); err != nil && !IsExist(err) {
			return err
		}
		return nil
	}); err != nil {
		return err
	}
	steps := []struct {
		items []*item
		do    func(*item) error
	}{{p.content, e.content}, {p.links, e.link}, {p.metas, e.meta}}
	for _, s := range steps {
		if err := forEach(ctx, e.o.Parallel, s.items, s.do); err != nil {
			return err
		}
	}
	return byDepth(ctx, e.o.Parallel, p.dirs, func(n *Node) string { return n.Path }, true, e.dirMeta)
}

// byDepth runs fn over items one depth level at a time, in parallel within a level.
func byDepth[T any](ctx context.Context, parallel int, items []T, path func(T) string, deepFirst bool, fn func(T) error) error {
	levels := map[int][]T{}
	maxD := 0
	for _, it := range items {
		d := Depth(path(it))
		levels[d] = append(levels[d], it)
		maxD = max(maxD, d)
	}
	for i := 0; i <= maxD; i++ {
		d := i
		if deepFirst {
			d = maxD - i
		}
		if err := forEach(ctx, parallel, levels[d], fn); err != nil {
			return err
		}
	}
	return nil
}

func (e *engine) removeAll(paths []string) error {
	for _, path := range paths {
		if err := e.o.Target.Remove(path); err != nil && !IsNotExist(err) {
			return fmt.Errorf("remove from the target: %w", err)
		}
		if e.j.Done(path) != nil || e.j.Started(path) {
			if err := e.j.Removed(path); err != nil {
				return err
			}
		}
		e.res.Removed++
	}
	return nil
}

// content writes one regular file, symlink or special file, with its metadata.
func (e *engine) content(it *item) error {
	n := it.node
	if err := e.j.Start(n.Path); err != nil {
		return err
	}
	if it.fresh && e.dst.Nodes[n.Path] != nil {
		if err := e.o.Target.Remove(n.Path); err != nil && !IsNotExist(err) {
			return fmt.Errorf("replace on the target: %w", err)
		}
	}
	var digest string
	switch n.Attr.Type {
	case TypeRegular:
		d, stable, err := e.copyStable(it)
		if err != nil || !stable {
			return err
		}
		digest = d
	case TypeSymlink:
		if err := e.o.Target.Symlink(n.Link, n.Path); err != nil {
			return err
		}
	default:
		if err := e.o.Target.Mknod(n.Path, n.Attr.Type, n.Attr.Perm, n.Attr.Rdev); err != nil {
			return err
		}
	}
	if err := e.applyMeta(n); err != nil {
		return err
	}
	if n.Attr.Type == TypeRegular {
		e.copied.Store(n.Path, digest)
	}
	e.finish(n, digest)
	e.p.fileDone()
	return nil
}

// copyStable copies a file until a copy starts and ends with the same source attributes.
// A file that keeps changing is left unfinished (reported) for the next pass.
func (e *engine) copyStable(it *item) (string, bool, error) {
	n := it.node
	for attempt := 1; ; attempt++ {
		digest, written, now, err := e.copyData(n)
		if err != nil {
			return "", false, err
		}
		e.countCopy(it, written)
		if now.Size == n.Attr.Size && now.Mtime == n.Attr.Mtime && now.Ctime == n.Attr.Ctime {
			return digest, true, nil
		}
		if attempt == maxAttempts {
			e.unstable(n.Path)
			return "", false, nil
		}
		n.Attr.Size, n.Attr.Mtime, n.Attr.Ctime, n.Attr.Atime = now.Size, now.Mtime, now.Ctime, now.Atime
	}
}

func (e *engine) countCopy(it *item, written int64) {
	atomic.AddInt64(&e.res.Copied.Files, 1)
	atomic.AddInt64(&e.res.Copied.Bytes, written)
	if it.recopy {
		atomic.AddInt64(&e.res.Recopied.Files, 1)
		atomic.AddInt64(&e.res.Recopied.Bytes, written)
	}
}

var unstableMu sync.Mutex

func (e *engine) unstable(path string) {
	unstableMu.Lock()
	e.res.Unstable = append(e.res.Unstable, path)
	unstableMu.Unlock()
}

// copyData streams a file's content to the target, leaving holes as holes, and returns the
// digest of what it read from the source and the source's attributes after the read.
func (e *engine) copyData(n *Node) (string, int64, Attr, error) {
	r, err := e.o.Source.Open(n.Path)
	if err != nil {
		return "", 0, Attr{}, err
	}
	defer r.Close()
	w, err := e.o.Target.Create(n.Path, 0o600)
	if err != nil {
		return "", 0, Attr{}, err
	}
	buf := getBuf()
	defer putBuf(buf)
	d := NewDigest(n.Attr.Size)
	var written int64
	ew := &extentWriter{Writer: e.stages.writer(w)}
	err = readChunks(e.stages.reader(r, &e.stages.read), n.Attr.Size, buf, e.limit.wait, func(off int64, data []byte, zero bool) error {
		e.stages.digest.time(func() { d.Add(data, zero) })
		e.p.addBytes(int64(len(data)))
		if zero {
			return nil
		}
		n, err := writeNonZero(ew, data, off)
		written += n
		return err
	})
	// The file was created empty: only a hole at its end needs the size set (on CephFS
	// a truncate can cost a metadata server request).
	if err == nil && ew.end != n.Attr.Size {
		err = w.Truncate(n.Attr.Size)
	}
	var cerr error
	e.stages.close.time(func() { cerr = w.Close() })
	if err == nil {
		err = cerr
	}
	var after Attr
	if err == nil {
		after, err = r.Stat()
	}
	if err != nil {
		return "", written, Attr{}, fmt.Errorf("copy %q: %w", n.Path, err)
	}
	return d.Sum(), written, after, nil
}

// extentWriter remembers where the data written so far ends.
type extentWriter struct {
	Writer
	end int64
}

func (w *extentWriter) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.Writer.WriteAt(p, off)
	w.end = max(w.end, off+int64(n))
	return n, err
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, ioSize); return &b }}

func getBuf() []byte  { return *bufPool.Get().(*[]byte) }
func putBuf(b []byte) { bufPool.Put(&b) }

// link makes one more name for an anchor's inode.
func (e *engine) link(it *item) error {
	n := it.node
	if e.dst.Nodes[n.Path] != nil {
		if err := e.o.Target.Remove(n.Path); err != nil && !IsNotExist(err) {
			return fmt.Errorf("replace on the target: %w", err)
		}
	}
	if err := e.o.Target.Link(it.anchor, n.Path); err != nil {
		return err
	}
	// An anchor copied by this run has the digest of that copy; its done record may not be
	// committed yet, and the journal's is an earlier run's, of earlier content. An anchor
	// whose copy did not finish (it kept changing) leaves the name for the next pass.
	digest := ""
	if d, ok := e.copied.Load(it.anchor); ok {
		digest = d.(string)
	} else if it.anchorCopied {
		e.p.fileDone()
		return nil
	} else if r := e.j.Done(it.anchor); r != nil {
		digest = r.Digest
	}
	atomic.AddInt64(&e.res.Linked, 1)
	e.finish(n, digest)
	e.p.fileDone()
	return nil
}

// meta re-applies the metadata of an entry whose content is current.
func (e *engine) meta(it *item) error {
	if err := e.applyMeta(it.node); err != nil {
		return err
	}
	digest := ""
	if r := e.j.Done(it.node.Path); r != nil {
		digest = r.Digest
	}
	atomic.AddInt64(&e.res.Metadata, 1)
	e.finish(it.node, digest)
	return nil
}

// dirMeta gives a directory its metadata once everything inside it is in place.
func (e *engine) dirMeta(n *Node) error {
	if err := e.applyMeta(n); err != nil {
		return err
	}
	e.finish(n, "")
	return nil
}

func (e *engine) finish(n *Node, digest string) {
	e.j.Finish(Record{Path: n.Path, Ino: n.Attr.Ino, Type: n.Attr.Type, Size: n.Attr.Size,
		Mtime: n.Attr.Mtime, Ctime: n.Attr.Ctime, Digest: digest, Renumbered: e.o.SourceRenumbers})
}

// applyMeta makes the target's xattrs the source's, then owner, mode and times together
// (owner before mode, which a chown would clear of setuid bits; times last).
func (e *engine) applyMeta(n *Node) error {
	cur, err := e.o.Target.Xattrs(n.Path)
	if err != nil {
		return err
	}
	for k, v := range n.Xattrs {
		if old, ok := cur[k]; ok && bytes.Equal(old, v) {
			continue
		}
		if err := e.o.Target.SetXattr(n.Path, k, v); err != nil {
			return err
		}
	}
	for k := range cur {
		if _, keep := n.Xattrs[k]; !keep && Carried(k) {
			if err := e.o.Target.RemoveXattr(n.Path, k); err != nil && !IsNoAttr(err) {
				return err
			}
		}
	}
	a := n.Attr
	atime, mtime := n.Times()
	return e.o.Target.SetAttr(n.Path, a.Type, Owner{UID: a.UID, GID: a.GID, Perm: a.Perm, Atime: atime, Mtime: mtime})
}

// committer journals finished work after the target has made it durable, in batches, and
// hands the committed files to the verifier.
type committer struct {
	done chan struct{}
	err  chan error
	e    *engine
}

func (e *engine) startCommitter(cancel context.CancelFunc) *committer {
	c := &committer{done: make(chan struct{}), err: make(chan error, 1), e: e}
	commit := func() error {
		batch, err := e.j.Commit(func() (err error) {
			e.stages.sync.time(func() { err = e.o.Target.Sync() })
			return err
		})
		e.inline.add(batch)
		return err
	}
	go func() {
		t := time.NewTicker(e.o.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := commit(); err != nil {
					c.err <- err
					cancel()
					return
				}
			case <-c.done:
				c.err <- commit()
				return
			}
		}
	}()
	return c
}

func (c *committer) stop() error {
	close(c.done)
	return <-c.err
}
