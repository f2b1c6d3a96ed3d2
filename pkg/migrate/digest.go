package migrate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
)

// ChunkSize is the digest's unit: a file's digest is built from one hash per chunk, an
// all-zero chunk (a hole or written zeros) counting as zeroChunk, so a hole costs no read
// and the digest depends on content only, never on how the storage allocates it.
const ChunkSize = 1 << 20

// ioSize is how much one read asks for: several chunks, for throughput on network storage.
const ioSize = 4 * ChunkSize

// holeBlock is the granularity at which written zeros are left as holes on the target.
const holeBlock = 4096

var zeroChunk [sha256.Size]byte

// Digest accumulates a file's content digest chunk by chunk, in order.
type Digest struct {
	h    hash.Hash
	size int64
}

// NewDigest starts the digest of a file of the given size.
func NewDigest(size int64) *Digest {
	d := &Digest{h: sha256.New(), size: size}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(size))
	d.h.Write(b[:])
	return d
}

// Add hashes the next chunk; zero says the caller knows it is all zeros.
func (d *Digest) Add(chunk []byte, zero bool) {
	if zero {
		d.h.Write(zeroChunk[:])
		return
	}
	sum := sha256.Sum256(chunk)
	d.h.Write(sum[:])
}

// Sum is the digest in hex.
func (d *Digest) Sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// chunkFunc receives each chunk of a file in order; zero chunks come with data nil when
// they were a hole and never read.
type chunkFunc func(off int64, data []byte, zero bool) error

// readChunks reads a file of the given size chunk by chunk, skipping what the storage
// reports as holes, and hands each chunk to fn. throttle, when set, is asked before each
// read. A file shorter than size is an error: it changed while being read.
func readChunks(r Reader, size int64, buf []byte, throttle func(int), fn chunkFunc) error {
	var dataStart, dataEnd int64 = -1, -1
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		if off >= dataEnd {
			s, e, err := r.Data(off)
			switch {
			case err == io.EOF:
				s, e = size, size
			case err != nil:
				return err
			}
			dataStart, dataEnd = min(s, size), min(e, size)
		}
		if off+ChunkSize <= dataStart { // whole chunks of hole before the next data
			holes := (min(dataStart, size) - off) / ChunkSize
			for i := int64(0); i < holes; i++ {
				if err := fn(off, nil, true); err != nil {
					return err
				}
				off += ChunkSize
			}
			continue
		}
		n = min(n, roundUp(dataEnd-off, ChunkSize), size-off)
		if throttle != nil {
			throttle(int(n))
		}
		if err := readFull(r, buf[:n], off); err != nil {
			return err
		}
		for c := int64(0); c < n; c += ChunkSize {
			chunk := buf[c:min(c+ChunkSize, n)]
			if err := fn(off+c, chunk, isZero(chunk)); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

func roundUp(n, unit int64) int64 {
	if n <= 0 {
		return unit
	}
	return (n + unit - 1) / unit * unit
}

// readFull fills p from off; a short file is io.ErrUnexpectedEOF.
func readFull(r Reader, p []byte, off int64) error {
	for done := 0; done < len(p); {
		n, err := r.ReadAt(p[done:], off+int64(done))
		done += n
		if done == len(p) {
			return nil
		}
		if err == io.EOF || (err == nil && n == 0) {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeNonZero writes the non-zero 4 KiB blocks of data at off, so zeros stay holes, and
// returns how many bytes it wrote.
func writeNonZero(w Writer, data []byte, off int64) (int64, error) {
	var written int64
	for i := 0; i < len(data); {
		if isZero(data[i:min(i+holeBlock, len(data))]) {
			i += holeBlock
			continue
		}
		j := i + holeBlock
		for j < len(data) && !isZero(data[j:min(j+holeBlock, len(data))]) {
			j += holeBlock
		}
		j = min(j, len(data))
		if _, err := w.WriteAt(data[i:j], off+int64(i)); err != nil {
			return written, err
		}
		written += int64(j - i)
		i = j
	}
	return written, nil
}
