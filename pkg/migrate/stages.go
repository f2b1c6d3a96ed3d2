package migrate

import (
	"sync/atomic"
	"time"
)

// Stages is where a run's copying and verification time went, summed over the files copied
// and read back at once (so a stage can take longer than the run's wall time).
type Stages struct {
	Read     Seconds `json:"read_s"`      // reading the source
	Digest   Seconds `json:"digest_s"`    // checksumming, as read and as read back
	Write    Seconds `json:"write_s"`     // writing the target
	Close    Seconds `json:"close_s"`     // closing written files (NFS: their commit)
	Sync     Seconds `json:"sync_s"`      // making the target durable before journaling
	ReadBack Seconds `json:"read_back_s"` // reading the target back for verification
}

// clock sums the time spent in one stage.
type clock struct{ atomic.Int64 }

func (c *clock) time(f func()) {
	start := time.Now()
	f()
	c.Add(int64(time.Since(start)))
}

func (c *clock) seconds() Seconds { return Seconds(time.Duration(c.Load()).Seconds()) }

type stageClock struct{ read, digest, write, close, sync, readBack clock }

func (s *stageClock) result() Stages {
	return Stages{Read: s.read.seconds(), Digest: s.digest.seconds(), Write: s.write.seconds(),
		Close: s.close.seconds(), Sync: s.sync.seconds(), ReadBack: s.readBack.seconds()}
}

// reader times r's reads on c (nil stays nil).
func (s *stageClock) reader(r Reader, c *clock) Reader {
	if r == nil {
		return nil
	}
	return timedReader{Reader: r, c: c}
}

func (s *stageClock) writer(w Writer) Writer { return timedWriter{Writer: w, c: &s.write} }

type timedReader struct {
	Reader
	c *clock
}

func (r timedReader) ReadAt(p []byte, off int64) (n int, err error) {
	r.c.time(func() { n, err = r.Reader.ReadAt(p, off) })
	return n, err
}

type timedWriter struct {
	Writer
	c *clock
}

func (w timedWriter) WriteAt(p []byte, off int64) (n int, err error) {
	w.c.time(func() { n, err = w.Writer.WriteAt(p, off) })
	return n, err
}
