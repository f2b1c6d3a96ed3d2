package migrate

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Difference is one way the target is not the source.
type Difference struct {
	Path   string `json:"path"`
	What   string `json:"what"`
	Source string `json:"source"`
	Target string `json:"target"`
}

func (d Difference) String() string {
	return fmt.Sprintf("%q: %s differs: source %s, target %s", d.Path, d.What, d.Source, d.Target)
}

// verify walks the target through the verification reader and compares it with the source
// scan; in full mode it also reads every file back and compares checksums with those taken
// as the source was read.
func (e *engine) verify(ctx context.Context) error {
	vt, err := scan(ctx, e.o.Verify, scanOptions{xattrs: true, links: true, parallel: e.o.Parallel})
	if err != nil {
		return fmt.Errorf("scan the target for verification: %w", err)
	}
	var diffs diffList
	for _, p := range e.src.Sorted() {
		compareNode(&diffs, e.src.Nodes[p], vt.Nodes[p])
	}
	for _, p := range vt.Sorted() {
		if e.src.Nodes[p] == nil && !e.o.Target.Limits().reserved(p) {
			diffs.add(p, "presence", "absent", vt.Nodes[p].Attr.Type.String())
		}
	}
	compareLinks(&diffs, e.src, vt)
	if e.inline != nil {
		diffs.list = append(diffs.list, e.inline.diffs.list...)
	}
	if e.o.VerifyMode == VerifyFull {
		if err := e.verifyContent(ctx, vt, &diffs); err != nil {
			return err
		}
	}
	sort.SliceStable(diffs.list, func(i, j int) bool { return diffs.list[i].Path < diffs.list[j].Path })
	e.res.Differences = diffs.list
	return nil
}

type diffList struct {
	mu   sync.Mutex
	list []Difference
}

func (d *diffList) add(path, what, src, dst string) {
	d.mu.Lock()
	d.list = append(d.list, Difference{Path: path, What: what, Source: src, Target: dst})
	d.mu.Unlock()
}

// compareNode compares one entry's metadata.
func compareNode(d *diffList, s, t *Node) {
	if t == nil {
		d.add(s.Path, "presence", s.Attr.Type.String(), "absent")
		return
	}
	a, b := s.Attr, t.Attr
	if a.Type != b.Type {
		d.add(s.Path, "type", a.Type.String(), b.Type.String())
		return
	}
	check := func(what string, ok bool, sv, tv any) {
		if !ok {
			d.add(s.Path, what, fmt.Sprint(sv), fmt.Sprint(tv))
		}
	}
	if a.Type != TypeSymlink {
		check("mode", a.Perm == b.Perm, fmt.Sprintf("%04o", a.Perm), fmt.Sprintf("%04o", b.Perm))
	}
	check("owner", a.UID == b.UID && a.GID == b.GID, fmt.Sprintf("%d:%d", a.UID, a.GID), fmt.Sprintf("%d:%d", b.UID, b.GID))
	atime, mtime := s.Times()
	check("mtime", mtime == b.Mtime, mtime, b.Mtime)
	if a.Type != TypeDir {
		check("atime", atime == b.Atime, atime, b.Atime)
	}
	if a.Type == TypeRegular || a.Type == TypeSymlink {
		check("size", a.Size == b.Size, a.Size, b.Size)
	}
	check("symlink target", s.Link == t.Link, s.Link, t.Link)
	if a.Type != TypeDir && a.Nlink == 1 && b.Nlink > 1 {
		d.add(s.Path, "hard link", "a separate inode", fmt.Sprintf("%d names", b.Nlink))
	}
	if a.Type == TypeChar || a.Type == TypeBlock {
		check("device", a.Rdev == b.Rdev, a.Rdev, b.Rdev)
	}
	compareXattrs(d, s, t)
}

func compareXattrs(d *diffList, s, t *Node) {
	for k, v := range s.Xattrs {
		if tv, ok := t.Xattrs[k]; !ok {
			d.add(s.Path, "xattr "+k, fmt.Sprintf("%d bytes", len(v)), "absent")
		} else if !bytes.Equal(v, tv) {
			d.add(s.Path, "xattr "+k, fmt.Sprintf("%q", v), fmt.Sprintf("%q", tv))
		}
	}
	for k := range t.Xattrs {
		if _, ok := s.Xattrs[k]; !ok {
			d.add(s.Path, "xattr "+k, "absent", "present")
		}
	}
}

// compareLinks checks that names sharing an inode in the source share one in the target,
// and only those.
func compareLinks(d *diffList, src, dst *Tree) {
	byIno := map[uint64][]string{}
	for p, n := range src.Nodes {
		if n.Attr.Type != TypeDir && n.Attr.Nlink > 1 {
			byIno[n.Attr.Ino] = append(byIno[n.Attr.Ino], p)
		}
	}
	srcOf := map[uint64]uint64{} // target inode -> the source inode it holds
	for _, paths := range byIno {
		sort.Strings(paths)
		for _, p := range paths {
			t := dst.Nodes[p]
			if t == nil {
				continue
			}
			sIno := src.Nodes[p].Attr.Ino
			if prev, ok := srcOf[t.Attr.Ino]; ok && prev != sIno {
				d.add(p, "hard link", "a separate inode", "linked to another name")
			}
			srcOf[t.Attr.Ino] = sIno
			if first := dst.Nodes[paths[0]]; first != nil && first.Attr.Ino != t.Attr.Ino {
				d.add(p, "hard link", "linked to "+paths[0], "a separate inode")
			}
		}
	}
}

// inlineVerify reads files back from the target as soon as their copies are committed,
// in parallel with the copying, so a run's verification mostly overlaps it. Its findings
// join the verification's (verify skips the files it checked).
type inlineVerify struct {
	e      *engine
	queue  chan *Record
	queued map[uint64]bool // source inodes queued: a hard link's other names are not read again
	wg     sync.WaitGroup
	mu     sync.Mutex
	ok     map[uint64]string // source inode -> digest read back and matched, or "failed <digest>"
	diffs  diffList
}

func (e *engine) startInlineVerify(ctx context.Context) *inlineVerify {
	if e.o.VerifyMode != VerifyFull {
		return nil
	}
	v := &inlineVerify{e: e, queue: make(chan *Record, 1<<16), queued: map[uint64]bool{}, ok: map[uint64]string{}}
	for i := 0; i < max(e.o.Parallel/2, 1); i++ {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			for r := range v.queue {
				if ctx.Err() == nil {
					v.check(r)
				}
			}
		}()
	}
	return v
}

// add queues committed regular files (from the committer alone); a full queue leaves them
// to the verification.
func (v *inlineVerify) add(batch []*Record) {
	if v == nil {
		return
	}
	for _, r := range batch {
		if r.Type != TypeRegular || r.Digest == "" || v.queued[r.Ino] {
			continue
		}
		select {
		case v.queue <- r:
			v.queued[r.Ino] = true
		default:
			return
		}
	}
}

func (v *inlineVerify) check(r *Record) {
	got, err := v.e.digestTarget(&Node{Path: r.Path, Attr: Attr{Type: TypeRegular, Size: r.Size}})
	switch {
	case err != nil:
		v.failed(r)
		v.diffs.add(r.Path, "content", "readable", err.Error())
	case got != r.Digest:
		v.failed(r)
		v.diffs.add(r.Path, "content", "sha256-chunks "+r.Digest[:16], "sha256-chunks "+got[:16])
	default:
		v.mu.Lock()
		v.ok[r.Ino] = got
		v.mu.Unlock()
		atomic.AddInt64(&v.e.res.Verified.Files, 1)
		atomic.AddInt64(&v.e.res.Verified.Bytes, r.Size)
	}
}

// failed records a file found different, so the verification does not report it again.
func (v *inlineVerify) failed(r *Record) {
	v.mu.Lock()
	v.ok[r.Ino] = "failed " + r.Digest
	v.mu.Unlock()
}

func (v *inlineVerify) stop() {
	if v != nil {
		close(v.queue)
		v.wg.Wait()
	}
}

// checked reports whether the file (any of its names) was read back while copying, with
// the journal's digest, or found different then.
func (v *inlineVerify) checked(r *Record) bool {
	if v == nil {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	d, ok := v.ok[r.Ino]
	return ok && (d == r.Digest || d == "failed "+r.Digest)
}

// verifyContent reads each target inode once and compares its digest with the journal's;
// files read back while copying are not read again.
func (e *engine) verifyContent(ctx context.Context, vt *Tree, diffs *diffList) error {
	var files []*Node
	seen := map[uint64]bool{}
	for _, p := range e.src.Sorted() {
		s, t := e.src.Nodes[p], vt.Nodes[p]
		if s.Attr.Type != TypeRegular || t == nil || t.Attr.Type != TypeRegular || seen[t.Attr.Ino] {
			continue
		}
		seen[t.Attr.Ino] = true
		if r := e.j.Done(p); r != nil && t.Attr.Size == r.Size && e.inline.checked(r) {
			continue
		}
		files = append(files, t)
	}
	var total int64
	for _, t := range files {
		total += t.Attr.Size
	}
	e.p.setTotals(int64(len(files)), total)
	return forEach(ctx, e.o.Parallel, files, func(t *Node) error {
		defer e.p.fileDone()
		r := e.j.Done(t.Path)
		if r == nil || r.Digest == "" {
			diffs.add(t.Path, "content", "copied", "never finished")
			return nil
		}
		got, err := e.digestTarget(t)
		if err != nil {
			diffs.add(t.Path, "content", "readable", err.Error())
			return nil
		}
		if got != r.Digest {
			diffs.add(t.Path, "content", "sha256-chunks "+r.Digest[:16], "sha256-chunks "+got[:16])
		}
		atomic.AddInt64(&e.res.Verified.Files, 1)
		atomic.AddInt64(&e.res.Verified.Bytes, t.Attr.Size)
		return nil
	})
}

// digestTarget reads a file back from the target, and sets back the atime where reading
// moved it.
func (e *engine) digestTarget(t *Node) (string, error) {
	d, err := e.readTarget(t)
	if err == nil && e.o.Target.Limits().ReadMovesAtime {
		if n := e.src.Nodes[t.Path]; n != nil {
			atime, mtime := n.Times()
			a := n.Attr
			err = e.o.Target.SetAttr(t.Path, a.Type, Owner{UID: a.UID, GID: a.GID, Perm: a.Perm, Atime: atime, Mtime: mtime})
		}
	}
	return d, err
}

func (e *engine) readTarget(t *Node) (string, error) {
	r, err := e.openTarget(t)
	if err != nil {
		return "", err
	}
	defer r.Close()
	buf := getBuf()
	defer putBuf(buf)
	d := NewDigest(t.Attr.Size)
	err = readChunks(e.stages.reader(r, &e.stages.readBack), t.Attr.Size, buf, nil, func(_ int64, data []byte, zero bool) error {
		e.stages.digest.time(func() { d.Add(data, zero) })
		e.p.addBytes(int64(len(data)))
		return nil
	})
	if err != nil {
		return "", err
	}
	return d.Sum(), nil
}

// openTarget opens a file for reading back: from the storage itself where the target can
// (no metadata server open, no capability recalled from the writer), else through the
// verification reader.
func (e *engine) openTarget(t *Node) (Reader, error) {
	if sr, ok := e.o.Target.(StoredReader); ok {
		if r, ok, err := sr.OpenStored(t.Path, t.Attr.Size); err != nil || ok {
			return r, err
		}
	}
	return e.o.Verify.Open(t.Path)
}
