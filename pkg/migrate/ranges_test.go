package migrate_test

import (
	"bytes"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/memfs"
)

// largeTree holds one 40 MiB file with data at both ends and a 16 MiB hole between them,
// and a small file beside it.
func largeTree(t *testing.T) (*memfs.FS, []byte) {
	f := memfs.New(posix)
	must(t, f.Mkdir("media", 0o755))
	head, tail := randBytes(12<<20), randBytes(12<<20)
	write(t, f, "media/video.mp4", 0o644, map[int64][]byte{0: head, 28 << 20: tail}, 40<<20)
	write(t, f, "media/index.html", 0o644, map[int64][]byte{0: []byte("<html>")}, 6)
	whole := make([]byte, 40<<20)
	copy(whole, head)
	copy(whole[28<<20:], tail)
	return f, whole
}

// streams counts the reads (or writes) of one path in flight at once, and the most seen.
type streams struct {
	path        string
	now, most   atomic.Int32
	overlapped  atomic.Bool
	exclusive   bool // a second call in flight is recorded as overlapped
	slowdownDur time.Duration
}

func (s *streams) enter(path string) func() {
	if path != s.path {
		return func() {}
	}
	n := s.now.Add(1)
	if n > 1 {
		s.overlapped.Store(true)
	}
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	time.Sleep(s.slowdownDur)
	return func() { s.now.Add(-1) }
}

// watchedFS counts the source reads and target writes of one file in flight at once.
type watchedFS struct {
	migrate.FS
	reads, writes *streams
	// serialWriter makes the writers it creates plain Writers, without the
	// ConcurrentWriter promise.
	serialWriter bool
}

type watchedReader struct {
	migrate.Reader
	path string
	s    *streams
}

func (r watchedReader) ReadAt(p []byte, off int64) (int, error) {
	defer r.s.enter(r.path)()
	return r.Reader.ReadAt(p, off)
}

type watchedWriter struct {
	migrate.Writer
	path string
	s    *streams
}

func (w watchedWriter) WriteAt(p []byte, off int64) (int, error) {
	defer w.s.enter(w.path)()
	return w.Writer.WriteAt(p, off)
}

type concurrentWatchedWriter struct{ watchedWriter }

func (concurrentWatchedWriter) ConcurrentWrites() bool { return true }

func (f *watchedFS) Open(p string) (migrate.Reader, error) {
	r, err := f.FS.Open(p)
	if err != nil || f.reads == nil {
		return r, err
	}
	return watchedReader{Reader: r, path: p, s: f.reads}, nil
}

func (f *watchedFS) Create(p string, perm uint32) (migrate.Writer, error) {
	w, err := f.FS.Create(p, perm)
	if err != nil || f.writes == nil {
		return w, err
	}
	ww := watchedWriter{Writer: w, path: p, s: f.writes}
	if f.serialWriter {
		return ww, nil
	}
	return concurrentWatchedWriter{ww}, nil
}

// sequentialDigest is the digest of content as one stream reads it, chunk after chunk.
func sequentialDigest(content []byte) string {
	d := migrate.NewDigest(int64(len(content)))
	for off := 0; off < len(content); off += migrate.ChunkSize {
		c := content[off:min(off+migrate.ChunkSize, len(content))]
		d.Add(c, bytes.Count(c, []byte{0}) == len(c))
	}
	return d.Sum()
}

// A large file is read, checksummed and written by several streams at once, at distinct
// offsets, when --parallel leaves streams idle; its digest is the one a single stream
// takes, its hole stays a hole, and the read-back verification passes.
func TestLargeFileCopiedInConcurrentRanges(t *testing.T) {
	srcFS, content := largeTree(t)
	reads := &streams{path: "media/video.mp4", slowdownDur: 2 * time.Millisecond}
	writes := &streams{path: "media/video.mp4"}
	src, dst, state := &watchedFS{FS: srcFS, reads: reads}, memfs.New(posix), t.TempDir()
	res, err := run(t, src, &watchedFS{FS: dst, writes: writes}, state, func(o *migrate.Options) { o.Verify = dst })
	if err != nil {
		t.Fatalf("run: %v %v", err, res.Differences)
	}
	same(t, srcFS, dst)
	if got := reads.most.Load(); got < 2 {
		t.Fatalf("the 40 MiB file was read by at most %d stream at once, want several with --parallel 4", got)
	}
	if res.Copied.Bytes > 24<<20+6 {
		t.Fatalf("wrote %d bytes: the 16 MiB hole was filled", res.Copied.Bytes)
	}
	if res.Verified.Files != 2 || res.Verified.Bytes != 40<<20+6 {
		t.Fatalf("verified %+v, want both files read back", res.Verified)
	}
	j, err := migrate.OpenJournal(state, "test")
	must(t, err)
	defer j.Close()
	if r := j.Done("media/video.mp4"); r == nil || r.Digest != sequentialDigest(content) {
		t.Fatalf("journaled digest %+v, want the single-stream digest %s", r, sequentialDigest(content))
	}
}

// With --parallel 1 a large file is copied by one stream alone.
func TestParallelOneCopiesOneStream(t *testing.T) {
	srcFS, _ := largeTree(t)
	reads := &streams{path: "media/video.mp4", slowdownDur: time.Millisecond}
	src, dst := &watchedFS{FS: srcFS, reads: reads}, memfs.New(posix)
	res, err := run(t, src, dst, t.TempDir(), func(o *migrate.Options) { o.Parallel = 1 })
	if err != nil {
		t.Fatalf("run: %v %v", err, res.Differences)
	}
	same(t, srcFS, dst)
	if got := reads.most.Load(); got != 1 {
		t.Fatalf("--parallel 1 read the file with %d streams at once", got)
	}
}

// A target whose writer does not promise concurrent writes gets one WriteAt at a time,
// while the ranges are still read by several streams.
func TestSerialWriterGetsOneWriteAtATime(t *testing.T) {
	srcFS, _ := largeTree(t)
	reads := &streams{path: "media/video.mp4", slowdownDur: 2 * time.Millisecond}
	writes := &streams{path: "media/video.mp4", slowdownDur: time.Millisecond}
	dst := memfs.New(posix)
	res, err := run(t, &watchedFS{FS: srcFS, reads: reads}, &watchedFS{FS: dst, writes: writes, serialWriter: true}, t.TempDir(),
		func(o *migrate.Options) { o.Verify = dst })
	if err != nil {
		t.Fatalf("run: %v %v", err, res.Differences)
	}
	same(t, srcFS, dst)
	if writes.overlapped.Load() {
		t.Fatal("two writes reached a writer that is not concurrent at once")
	}
	if reads.most.Load() < 2 {
		t.Fatal("the ranges were not read concurrently")
	}
}

// --bwlimit bounds all the streams of a file together: 40 MiB with 24 MiB of data at
// 8 MiB/s (a burst of one second) takes at least two seconds.
func TestBandwidthLimitBoundsAllRanges(t *testing.T) {
	srcFS, _ := largeTree(t)
	dst := memfs.New(posix)
	start := time.Now()
	res, err := run(t, srcFS, dst, t.TempDir(), func(o *migrate.Options) { o.BytesPerSecond = 8 << 20; o.VerifyMode = migrate.VerifyMetadata })
	if err != nil {
		t.Fatalf("run: %v %v", err, res.Differences)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("24 MiB read at --bwlimit 8M took %v", took)
	}
	same(t, srcFS, dst)
}

// A run that fails part way through a large file's ranges does not journal it: the rerun
// copies it again, whole, and the trees end equal.
func TestInterruptedRangesAreRecopied(t *testing.T) {
	for _, n := range []int{12, 15, 18, 21} {
		srcFS, _ := largeTree(t)
		dst, state := memfs.New(posix), t.TempDir()
		failAt(dst, n)
		_, err := run(t, srcFS, dst, state, func(o *migrate.Options) { o.CommitInterval = time.Millisecond })
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("failing at target op %d: run ended with %v, want EIO", n, err)
		}
		dst.Fail = nil
		j, err := migrate.OpenJournal(state, "test")
		must(t, err)
		if j.Done("media/video.mp4") != nil {
			t.Fatalf("failing at target op %d: the partly written file was journaled finished", n)
		}
		j.Close()
		res, err := run(t, srcFS, dst, state, nil)
		if err != nil {
			t.Fatalf("failing at target op %d: rerun: %v %v", n, err, res.Differences)
		}
		same(t, srcFS, dst)
		if res.Recopied.Bytes < 24<<20 {
			t.Fatalf("failing at target op %d: rerun recopied %d bytes, want the whole large file's data", n, res.Recopied.Bytes)
		}
	}
}
