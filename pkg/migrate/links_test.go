package migrate_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/memfs"
)

// numbered shows a tree under the inode numbers a snapshot gives its files: ino maps a path
// (every name of a hard-linked file) to its number; other entries get theirs plus 10000.
type numbered struct {
	migrate.FS
	ino map[string]uint64
}

func (n numbered) number(p string, a *migrate.Attr) {
	if i, ok := n.ino[p]; ok {
		a.Ino = i
	} else {
		a.Ino += 10000
	}
}

func (n numbered) Lstat(p string) (migrate.Attr, error) {
	a, err := n.FS.Lstat(p)
	n.number(p, &a)
	return a, err
}

func (n numbered) ReadDir(p string) ([]migrate.Entry, error) {
	es, err := n.FS.ReadDir(p)
	for i := range es {
		child := es[i].Name
		if p != "" {
			child = p + "/" + child
		}
		n.number(child, &es[i].Attr)
	}
	return es, err
}

// oneFile is a source holding m/file, and a directory a.
func oneFile(t *testing.T) *memfs.FS {
	f := memfs.New(posix)
	must(t, f.Mkdir("a", 0o755))
	must(t, f.Mkdir("m", 0o755))
	write(t, f, "m/file", 0o644, map[int64][]byte{0: randBytes(100 << 10)}, 100<<10)
	return f
}

// rewriteAndLink gives m/file new content and a second name, a/link, which sorts first.
func rewriteAndLink(t *testing.T, f *memfs.FS) {
	write(t, f, "m/file", 0o644, map[int64][]byte{0: randBytes(200 << 10)}, 200<<10)
	must(t, f.Link("m/file", "a/link"))
}

// A hard link made to an anchor this run rewrote is journaled with the anchor's new
// digest, not the one the journal held from the earlier run: here the new name sorts
// first, so the verification checks the content under the link's record.
func TestLinkToRewrittenAnchorHasItsNewDigest(t *testing.T) {
	src, dst, state := oneFile(t), memfs.New(posix), t.TempDir()
	_, err := run(t, src, dst, state, nil)
	must(t, err)

	rewriteAndLink(t, src)
	// No commit between the anchor's copy and the link: the anchor's new record is pending.
	res, err := run(t, src, dst, state, func(o *migrate.Options) { o.CommitInterval = time.Hour })
	if err != nil {
		t.Fatalf("rerun: %v, differences %v", err, res.Differences)
	}
	if res.Copied.Files != 1 || res.Linked != 1 {
		t.Fatalf("rerun copied %d files and linked %d names: want 1 and 1", res.Copied.Files, res.Linked)
	}
	same(t, src, dst)
	j, err := migrate.OpenJournal(state, "test")
	must(t, err)
	defer j.Close()
	if l, f := j.Done("a/link"), j.Done("m/file"); l == nil || f == nil || l.Digest != f.Digest {
		t.Fatalf("journal: a/link %+v, m/file %+v: want one digest for one inode", l, f)
	}
}

// A run stopped while copying a hard-linked file, resumed over a new snapshot of the source
// whose files are numbered anew (a OneFS snapshot re-taken): a number a finished file had in
// the first snapshot that the second gives the hard-linked file is no rename. Before, the
// finished file was renamed onto the link's second name, that name became the anchor and
// was rewritten in place, and the first name was linked to it with the finished file's
// digest: the verification found "media/large.bin": content differs (the kill test's failure).
func TestResumeOverRenumberedSnapshotRenamesNothing(t *testing.T) {
	src, dst, state := memfs.New(posix), memfs.New(posix), t.TempDir()
	for _, d := range []string{"a", "media", "site"} {
		must(t, src.Mkdir(d, 0o755))
	}
	write(t, src, "a/f.html", 0o644, map[int64][]byte{0: randBytes(5000)}, 5000)
	write(t, src, "media/large.bin", 0o644, map[int64][]byte{0: randBytes(3 << 20)}, 3<<20)
	must(t, src.Link("media/large.bin", "site/hardlink"))

	writes := 0
	dst.Fail = func(op, path string) error {
		if op == "write" && path == "media/large.bin" {
			if writes++; writes > 1 {
				return syscall.EIO
			}
		}
		return nil
	}
	renumbers := func(o *migrate.Options) { o.SourceRenumbers, o.Parallel = true, 1 }
	first := numbered{src, map[string]uint64{"a/f.html": 500, "media/large.bin": 600, "site/hardlink": 600}}
	if _, err := run(t, first, dst, state, renumbers); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first run: %v, want it stopped part-way through media/large.bin", err)
	}
	dst.Fail = nil
	j, err := migrate.OpenJournal(state, "test")
	must(t, err)
	if j.Done("a/f.html") == nil || !j.Started("media/large.bin") || j.Done("media/large.bin") != nil {
		t.Fatalf("first run left a/f.html done %v, media/large.bin started %v: want a/f.html finished, media/large.bin begun",
			j.Done("a/f.html") != nil, j.Started("media/large.bin"))
	}
	j.Close()

	second := numbered{src, map[string]uint64{"a/f.html": 700, "media/large.bin": 500, "site/hardlink": 500}}
	res, err := run(t, second, dst, state, renumbers)
	if err != nil {
		t.Fatalf("rerun: %v, differences %v", err, res.Differences)
	}
	if res.Renamed != 0 {
		t.Fatalf("rerun renamed %d entries: the source renamed nothing", res.Renamed)
	}
	same(t, src, dst)
}

// changing shows the file at path as changed after every read of it while on is set, as a
// file an application keeps writing.
type changing struct {
	migrate.FS
	path  string
	on    bool
	reads int64
}

type changedReader struct {
	migrate.Reader
	c *changing
}

func (r changedReader) Stat() (migrate.Attr, error) {
	a, err := r.Reader.Stat()
	r.c.reads++
	a.Mtime.Nsec = (a.Mtime.Nsec + r.c.reads) % 1e9
	return a, err
}

func (c *changing) Open(p string) (migrate.Reader, error) {
	r, err := c.FS.Open(p)
	if err == nil && c.on && p == c.path {
		return changedReader{r, c}, nil
	}
	return r, err
}

// A hard link made to an anchor whose copy never finished (it changed at every attempt) is
// not journaled finished: the next pass copies the inode again instead of trusting the
// link's record, which held the anchor's earlier digest.
func TestLinkToUnfinishedAnchorIsNotFinished(t *testing.T) {
	mem, dst, state := oneFile(t), memfs.New(posix), t.TempDir()
	src := &changing{FS: mem, path: "m/file"}
	_, err := run(t, src, dst, state, nil)
	must(t, err)

	rewriteAndLink(t, mem)
	src.on = true
	res, _ := run(t, src, dst, state, nil)
	if len(res.Unstable) != 1 || res.Unstable[0] != "m/file" {
		t.Fatalf("changed while copying: %v, want m/file", res.Unstable)
	}
	j, err := migrate.OpenJournal(state, "test")
	must(t, err)
	if r := j.Done("a/link"); r != nil {
		t.Fatalf("a/link is journaled finished (%+v) though its inode's copy did not finish", r)
	}
	j.Close()

	src.on = false
	res, err = run(t, src, dst, state, nil)
	if err != nil {
		t.Fatalf("next pass: %v, differences %v", err, res.Differences)
	}
	if res.Copied.Files != 1 {
		t.Fatalf("next pass copied %d files: want m/file, whose copy never finished", res.Copied.Files)
	}
	same(t, mem, dst)
}
