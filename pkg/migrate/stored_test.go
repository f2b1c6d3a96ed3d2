package migrate_test

import (
	"errors"
	"io"
	"math"
	"sync/atomic"
	"testing"

	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/memfs"
)

// storedTarget is a target that reads files up to maxSize back from its "storage": the
// memfs its writes went to, except for paths whose stored bytes were damaged.
type storedTarget struct {
	*memfs.FS
	maxSize int64
	damaged map[string][]byte
	reads   atomic.Int64
}

func (s *storedTarget) OpenStored(p string, size int64) (migrate.Reader, bool, error) {
	if size > s.maxSize {
		return nil, false, nil
	}
	s.reads.Add(1)
	if b, ok := s.damaged[p]; ok {
		return bytesReader(b), true, nil
	}
	r, err := s.FS.Open(p)
	return r, true, err
}

type bytesReader []byte

func (b bytesReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	return copy(p, b[off:]), nil
}
func (b bytesReader) Data(off int64) (int64, int64, error) { return off, math.MaxInt64, nil }
func (b bytesReader) Stat() (migrate.Attr, error)          { return migrate.Attr{}, errors.New("none") }
func (b bytesReader) Close() error                         { return nil }

// The verification reads small files back from the target's storage where the target can
// (StoredReader), larger ones through the verification reader; what is compared is what
// the storage holds, not what the writer sees.
func TestVerificationReadsTheTargetsStorage(t *testing.T) {
	src := sourceTree(t)
	dst := &storedTarget{FS: memfs.New(posix), maxSize: 64 << 10}
	res, err := run(t, src, dst, t.TempDir(), nil)
	must(t, err)
	// 40 uploads and bottom.txt are small; big.bin (3 names) and sparse.img are read by Open.
	if n := dst.reads.Load(); n < 41 || n >= res.Verified.Files {
		t.Fatalf("%d files read from storage of %d verified: want the small ones only", n, res.Verified.Files)
	}
	same(t, src, dst.FS)

	src2, state := sourceTree(t), t.TempDir()
	a, _ := src2.Lstat("www/uploads/f07")
	dst2 := &storedTarget{FS: memfs.New(posix), maxSize: 64 << 10, damaged: map[string][]byte{"www/uploads/f07": make([]byte, a.Size)}}
	res, err = run(t, src2, dst2, state, nil)
	if !errors.Is(err, migrate.ErrDifferences) {
		t.Fatalf("run with a damaged stored file: %v, want ErrDifferences", err)
	}
	if len(res.Differences) != 1 || res.Differences[0].Path != "www/uploads/f07" || res.Differences[0].What != "content" {
		t.Fatalf("differences %v: want the content of www/uploads/f07 alone", res.Differences)
	}
}

// renumbered shows a tree under inode numbers of its own, as a snapshot may.
type renumbered struct {
	migrate.FS
	by uint64
}

func (r renumbered) Lstat(p string) (migrate.Attr, error) {
	a, err := r.FS.Lstat(p)
	a.Ino += r.by
	return a, err
}

func (r renumbered) ReadDir(p string) ([]migrate.Entry, error) {
	es, err := r.FS.ReadDir(p)
	for i := range es {
		es[i].Attr.Ino += r.by
	}
	return es, err
}

// A run over a source that renumbers its files (each snapshot its own numbers) trusts
// what an earlier run copied by size and mtime: a rerun copies again only the one inode
// with hard links (big.bin), whose identity matters.
func TestRenumberingSourceIsNotCopiedAgain(t *testing.T) {
	for _, flag := range []bool{false, true} {
		src, dst, state := sourceTree(t), memfs.New(posix), t.TempDir()
		opts := func(o *migrate.Options) { o.SourceRenumbers = flag }
		_, err := run(t, renumbered{src, 1000}, dst, state, opts)
		must(t, err)
		res, err := run(t, renumbered{src, 2000}, dst, state, opts)
		must(t, err)
		if flag && res.Copied.Files != 1 || !flag && res.Copied.Files < 40 {
			t.Fatalf("SourceRenumbers %v: the rerun copied %d files", flag, res.Copied.Files)
		}
		same(t, src, dst)
	}
}
