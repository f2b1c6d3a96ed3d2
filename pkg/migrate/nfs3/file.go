package nfs3

/*
#include <stdlib.h>
#include <fcntl.h>
#include <nfsc/libnfs.h>
*/
import "C"

import (
	"io"
	"math"
	"syscall"
	"unsafe"

	"github.com/shiphold/shiphold/pkg/migrate"
)

// file is an open NFS file; it keeps one context for its whole life.
type file struct {
	f    *FS
	c    *C.struct_nfs_context
	fh   *C.struct_nfsfh
	path string
}

func (f *FS) open(p string, flags, mode int) (*file, error) {
	c, err := f.get()
	if err != nil {
		return nil, err
	}
	cp := f.path(p)
	defer C.free(unsafe.Pointer(cp))
	var fh *C.struct_nfsfh
	if ret := C.nfs_open2(c, cp, C.int(flags), C.int(mode), &fh); ret < 0 {
		f.put(c)
		return nil, syscall.Errno(-ret)
	}
	return &file{f: f, c: c, fh: fh, path: p}, nil
}

func (h *file) release() {
	C.nfs_close(h.c, h.fh)
	h.f.put(h.c)
}

func (f *FS) Open(p string) (migrate.Reader, error) {
	h, err := f.open(p, syscall.O_RDONLY|syscall.O_NOFOLLOW, 0)
	return h, perr("open", p, err)
}

func (f *FS) Create(p string, perm uint32) (migrate.Writer, error) {
	if f.cfg.ReadOnly {
		return nil, perr("create", p, syscall.EROFS)
	}
	h, err := f.open(p, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_NOFOLLOW, int(perm))
	return &wfile{h}, perr("create", p, err)
}

func (h *file) ReadAt(b []byte, off int64) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	ret := C.nfs_pread(h.c, h.fh, C.uint64_t(off), C.uint64_t(len(b)), unsafe.Pointer(&b[0]))
	switch {
	case ret < 0:
		return 0, perr("read", h.path, syscall.Errno(-ret))
	case ret == 0:
		return 0, io.EOF
	}
	return int(ret), nil
}

// Data: NFSv3 cannot tell holes; the engine recognises zeros.
func (h *file) Data(off int64) (int64, int64, error) { return off, math.MaxInt64, nil }

func (h *file) Stat() (migrate.Attr, error) {
	var st C.struct_nfs_stat_64
	if ret := C.nfs_fstat64(h.c, h.fh, &st); ret < 0 {
		return migrate.Attr{}, perr("stat", h.path, syscall.Errno(-ret))
	}
	return attrOfStat(&st), nil
}

func (h *file) Close() error {
	h.release()
	return nil
}

type wfile struct{ *file }

func (w *wfile) WriteAt(b []byte, off int64) (int, error) {
	for done := 0; done < len(b); {
		ret := C.nfs_pwrite(w.c, w.fh, C.uint64_t(off+int64(done)), C.uint64_t(len(b)-done), unsafe.Pointer(&b[done]))
		if ret < 0 {
			return done, perr("write", w.path, syscall.Errno(-ret))
		}
		done += int(ret)
	}
	return len(b), nil
}

func (w *wfile) Truncate(size int64) error {
	if ret := C.nfs_ftruncate(w.c, w.fh, C.uint64_t(size)); ret < 0 {
		return perr("truncate", w.path, syscall.Errno(-ret))
	}
	return nil
}

// Close commits what was written, so the engine may journal the file as finished.
func (w *wfile) Close() error {
	ret := C.nfs_fsync(w.c, w.fh)
	w.release()
	if ret < 0 {
		return perr("commit", w.path, syscall.Errno(-ret))
	}
	return nil
}
