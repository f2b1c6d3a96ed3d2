package harness

import (
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FrozenFS is a FUSE filesystem served by the test itself: an empty directory that answers
// until Freeze, then never again, so every stat, statfs or open on it blocks, as on a mount
// whose NFS server died (or was SIGSTOPped). Close aborts the connection, which releases
// every blocked call, and removes the mount.
type FrozenFS struct {
	Mountpoint string
	fd         int
	frozen     atomic.Bool
	done       chan struct{}
}

// FUSE opcodes and sizes this server answers (linux/fuse.h, protocol 7.x).
const (
	fuseLookup     = 1
	fuseForget     = 2
	fuseGetattr    = 3
	fuseStatfs     = 17
	fuseGetxattr   = 22
	fuseInit       = 26
	fuseOpendir    = 27
	fuseReaddir    = 28
	fuseReleasedir = 29
	fuseAccess     = 34
	fuseInterrupt  = 36
	fuseDestroy    = 38
	fuseBatchForgt = 42
	fuseInHeader   = 40
	fuseOutHeader  = 16
)

// MountFrozenFS mounts a FrozenFS at mountpoint (a directory) until the test ends.
func MountFrozenFS(t testing.TB, mountpoint string) *FrozenFS {
	t.Helper()
	_, err := os.Stat("/dev/fuse")
	Require(t, "FUSE", os.Geteuid() == 0 && err == nil, "needs root and /dev/fuse")
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/fuse: %v", err)
	}
	opts := "fd=" + strconv.Itoa(fd) + ",rootmode=40755,user_id=0,group_id=0,allow_other"
	if err := unix.Mount("frozenfs", mountpoint, "fuse.frozenfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		t.Fatalf("mount FUSE at %s: %v", mountpoint, err)
	}
	f := &FrozenFS{Mountpoint: mountpoint, fd: fd, done: make(chan struct{})}
	go f.serve()
	t.Cleanup(f.Close)
	return f
}

// Freeze stops answering: from now on every request waits for ever.
func (f *FrozenFS) Freeze() { f.frozen.Store(true) }

// Close aborts the connection (a forced unmount of a FUSE mount does), so that blocked
// calls return ENOTCONN, and detaches the mount.
func (f *FrozenFS) Close() {
	select {
	case <-f.done:
		return
	default:
	}
	unix.Unmount(f.Mountpoint, unix.MNT_FORCE)
	unix.Unmount(f.Mountpoint, unix.MNT_DETACH)
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
	}
	unix.Close(f.fd)
}

func (f *FrozenFS) serve() {
	defer close(f.done)
	buf := make([]byte, 1<<20+4096)
	for {
		n, err := unix.Read(f.fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil || n < fuseInHeader {
			return // ENODEV: aborted or unmounted
		}
		op := binary.LittleEndian.Uint32(buf[4:8])
		unique := binary.LittleEndian.Uint64(buf[8:16])
		if f.frozen.Load() && op != fuseDestroy {
			continue
		}
		body, errno, reply := f.answer(op, buf[fuseInHeader:n])
		if reply {
			f.reply(unique, errno, body)
		}
	}
}

// answer returns the reply body, a negative errno, and whether op gets a reply at all.
func (f *FrozenFS) answer(op uint32, in []byte) ([]byte, int32, bool) {
	switch op {
	case fuseForget, fuseBatchForgt, fuseInterrupt:
		return nil, 0, false
	case fuseInit:
		out := make([]byte, 64)
		le := binary.LittleEndian
		minor := le.Uint32(in[4:8])
		if minor > 31 {
			minor = 31
		}
		le.PutUint32(out[0:], 7)
		le.PutUint32(out[4:], minor)
		le.PutUint32(out[8:], le.Uint32(in[8:12])) // max_readahead
		le.PutUint16(out[16:], 16)                 // max_background
		le.PutUint16(out[18:], 12)                 // congestion_threshold
		le.PutUint32(out[20:], 128<<10)            // max_write
		le.PutUint32(out[24:], 1)                  // time_gran
		return out, 0, true
	case fuseGetattr:
		return rootAttr(), 0, true
	case fuseStatfs:
		out := make([]byte, 80)
		le := binary.LittleEndian
		for i, v := range []uint64{1024, 512, 512, 100, 50} {
			le.PutUint64(out[i*8:], v)
		}
		le.PutUint32(out[40:], 4096)
		le.PutUint32(out[44:], 255)
		le.PutUint32(out[48:], 4096)
		return out, 0, true
	case fuseOpendir:
		out := make([]byte, 16)
		binary.LittleEndian.PutUint64(out, 1)
		return out, 0, true
	case fuseReaddir, fuseReleasedir, fuseAccess, fuseDestroy:
		return nil, 0, true
	case fuseLookup:
		return nil, -int32(unix.ENOENT), true
	case fuseGetxattr:
		return nil, -int32(unix.ENODATA), true
	}
	return nil, -int32(unix.ENOSYS), true
}

// rootAttr is fuse_attr_out for the root directory, valid for no time at all so that each
// stat asks the server.
func rootAttr() []byte {
	out := make([]byte, 104)
	le := binary.LittleEndian
	a := out[16:]
	now := uint64(time.Now().Unix())
	le.PutUint64(a[0:], 1) // ino
	for _, off := range []int{24, 32, 40} {
		le.PutUint64(a[off:], now) // atime, mtime, ctime
	}
	le.PutUint32(a[60:], unix.S_IFDIR|0o755) // mode
	le.PutUint32(a[64:], 2)                  // nlink
	le.PutUint32(a[80:], 4096)               // blksize
	return out
}

func (f *FrozenFS) reply(unique uint64, errno int32, body []byte) {
	out := make([]byte, fuseOutHeader+len(body))
	le := binary.LittleEndian
	le.PutUint32(out[0:], uint32(len(out)))
	le.PutUint32(out[4:], uint32(errno))
	le.PutUint64(out[8:], unique)
	copy(out[fuseOutHeader:], body)
	unix.Write(f.fd, out)
}
