package migrate

import (
	"sync"
	"sync/atomic"
)

// rangeSize is the part of a file one stream reads at a time: a file of two parts or more
// is copied, and read back, by several streams at once (each with a reader of its own) while
// --parallel leaves streams idle.
const rangeSize = 2 * ioSize

// rangeStreams bounds the streams one file takes.
const rangeStreams = 4

// streams is the pool of I/O streams --parallel allows on one side of a run: each file a
// worker copies (or reads back) holds one, and a large file takes idle ones for its ranges.
type streams chan struct{}

func newStreams(n int) streams { return make(streams, max(n, 1)) }

func (s streams) acquire() { s <- struct{}{} }
func (s streams) release() { <-s }

func (s streams) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// readParts reads a file of the given size part by part: the calling stream with r, holding
// one of pool's streams, and up to rangeStreams-1 more while pool has them idle, each with a
// reader from open. fn gets each part's chunks in order, from several streams at once.
func readParts(pool streams, r Reader, open func() (Reader, error), size int64, throttle func(int), fn chunkFunc) error {
	parts := (size + rangeSize - 1) / rangeSize
	var (
		next   atomic.Int64
		failed atomic.Bool
		once   sync.Once
		ferr   error
		wg     sync.WaitGroup
	)
	fail := func(err error) {
		once.Do(func() { ferr = err })
		failed.Store(true)
	}
	stream := func(r Reader) {
		buf := getBuf()
		defer putBuf(buf)
		for !failed.Load() {
			i := next.Add(1) - 1
			if i >= max(parts, 1) {
				return
			}
			start := i * rangeSize
			if err := readRange(r, start, min(start+rangeSize, size), size, buf, throttle, fn); err != nil {
				fail(err)
				return
			}
		}
	}
	for k := int64(1); k < min(parts, rangeStreams) && pool.tryAcquire(); k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pool.release()
			hr, err := open()
			if err != nil {
				fail(err)
				return
			}
			defer hr.Close()
			stream(hr)
		}()
	}
	stream(r)
	wg.Wait()
	return ferr
}

// serialWriter gives a writer that does not promise concurrent writes one WriteAt at a time.
type serialWriter struct {
	Writer
	mu sync.Mutex
}

func (w *serialWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Writer.WriteAt(p, off)
}

// concurrent returns w itself where it takes writes from several goroutines at once, else w
// serialised.
func concurrent(w Writer) Writer {
	if c, ok := w.(ConcurrentWriter); ok && c.ConcurrentWrites() {
		return w
	}
	return &serialWriter{Writer: w}
}
