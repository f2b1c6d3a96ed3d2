package migrate_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/memfs"
)

// slowFS takes delay over every read and every sync, and counts them.
type slowFS struct {
	migrate.FS
	delay        time.Duration
	reads, syncs atomic.Int64
}

type slowReader struct {
	migrate.Reader
	f *slowFS
}

func (r slowReader) ReadAt(p []byte, off int64) (int, error) {
	r.f.reads.Add(1)
	time.Sleep(r.f.delay)
	return r.Reader.ReadAt(p, off)
}

func (f *slowFS) Open(p string) (migrate.Reader, error) {
	r, err := f.FS.Open(p)
	if err != nil {
		return nil, err
	}
	return slowReader{Reader: r, f: f}, nil
}

func (f *slowFS) Sync() error {
	f.syncs.Add(1)
	time.Sleep(f.delay)
	return f.FS.Sync()
}

// A run reports where its time went: at least the time its source reads, its target's
// syncs and its read-back took, and some checksumming and writing.
func TestResultSaysWhereTheTimeWent(t *testing.T) {
	const delay = 5 * time.Millisecond
	src := &slowFS{FS: sourceTree(t), delay: delay}
	dstFS := memfs.New(posix)
	dst, verify := &slowFS{FS: dstFS, delay: delay}, &slowFS{FS: dstFS, delay: delay}
	res, err := run(t, src, dst, t.TempDir(), func(o *migrate.Options) { o.Verify = verify })
	if err != nil {
		t.Fatalf("run: %v %v", err, res.Differences)
	}
	st := res.Stages
	atLeast := func(stage string, got migrate.Seconds, calls int64) {
		if want := time.Duration(calls) * delay; calls == 0 || time.Duration(float64(got)*float64(time.Second)) < want {
			t.Errorf("%s: %.3fs reported for %d calls of %v each", stage, got, calls, delay)
		}
	}
	atLeast("read", st.Read, src.reads.Load())
	atLeast("sync", st.Sync, dst.syncs.Load())
	atLeast("read back", st.ReadBack, verify.reads.Load())
	if st.Digest <= 0 || st.Write <= 0 {
		t.Errorf("no checksumming or writing time reported: %+v", st)
	}
}
