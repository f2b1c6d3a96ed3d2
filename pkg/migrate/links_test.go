package migrate_test

import (
	"errors"
	"syscall"
	"testing"

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
