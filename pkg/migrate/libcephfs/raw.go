package libcephfs

/*
#cgo LDFLAGS: -lcephfs
#define _FILE_OFFSET_BITS 64
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <errno.h>
#include <cephfs/libcephfs.h>

static int shiphold_setattrx(struct ceph_mount_info *m, const char *path, unsigned uid, unsigned gid,
		unsigned mode, int set_mode, long long asec, long anss, long long msec, long mnss) {
	struct ceph_statx stx;
	memset(&stx, 0, sizeof(stx));
	int mask = CEPH_SETATTR_UID | CEPH_SETATTR_GID | CEPH_SETATTR_ATIME | CEPH_SETATTR_MTIME;
	stx.stx_uid = uid;
	stx.stx_gid = gid;
	if (set_mode) {
		stx.stx_mode = mode;
		mask |= CEPH_SETATTR_MODE;
	}
	stx.stx_atime.tv_sec = asec;
	stx.stx_atime.tv_nsec = anss;
	stx.stx_mtime.tv_sec = msec;
	stx.stx_mtime.tv_nsec = mnss;
	return ceph_setattrx(m, path, &stx, mask, AT_SYMLINK_NOFOLLOW);
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/ceph/go-ceph/cephfs"
)

// go-ceph v0.37.0 wraps neither ceph_setattrx (owner, mode and nanosecond times of a
// symlink or directory in one call), nor ceph_mknod with a full dev_t (its Mknod takes 16
// bits), nor session reclaim (ceph_set_uuid, ceph_start_reclaim). Those few calls go to
// libcephfs here, on the handle go-ceph holds.

// raw is the libcephfs handle inside a go-ceph MountInfo, whose only field it is.
func raw(m *cephfs.MountInfo) *C.struct_ceph_mount_info {
	return (*C.struct_ceph_mount_info)(*(*unsafe.Pointer)(unsafe.Pointer(m)))
}

// checkRaw makes sure the handle found is the one go-ceph uses, should its layout change.
func checkRaw(m *cephfs.MountInfo) error {
	h := raw(m)
	if h == nil {
		return fmt.Errorf("go-ceph's MountInfo holds no libcephfs handle where expected")
	}
	if got, want := C.ceph_is_mounted(h) == 1, m.IsMounted(); got != want {
		return fmt.Errorf("go-ceph's MountInfo layout changed: the handle found is not its mount")
	}
	if m.IsMounted() && C.GoString(C.ceph_getcwd(h)) != m.CurrentDir() {
		return fmt.Errorf("go-ceph's MountInfo layout changed: the handle found is not its mount")
	}
	return nil
}

func errnoErr(ret C.int) error {
	if ret >= 0 {
		return nil
	}
	return errno(int(ret))
}

func setattrx(m *cephfs.MountInfo, path string, uid, gid, mode uint32, setMode bool, asec, ansec, msec, mnsec int64) error {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	sm := C.int(0)
	if setMode {
		sm = 1
	}
	return errnoErr(C.shiphold_setattrx(raw(m), p, C.uint(uid), C.uint(gid), C.uint(mode), sm,
		C.longlong(asec), C.long(ansec), C.longlong(msec), C.long(mnsec)))
}

func mknod(m *cephfs.MountInfo, path string, mode uint32, rdev uint64) error {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	return errnoErr(C.ceph_mknod(raw(m), p, C.mode_t(mode), C.dev_t(rdev)))
}

// reclaim ends the session an earlier run of this client left behind (a killed process),
// so its capabilities do not block this one for the MDS session timeout, and names this
// session uuid for the next run. Call after Init, before Mount.
func reclaim(m *cephfs.MountInfo, uuid string) error {
	u := C.CString(uuid)
	defer C.free(unsafe.Pointer(u))
	h := raw(m)
	ret := C.ceph_start_reclaim(h, u, C.CEPH_RECLAIM_RESET)
	C.ceph_finish_reclaim(h)
	C.ceph_set_uuid(h, u)
	if ret < 0 && -ret != C.ENOENT {
		return fmt.Errorf("reclaim the session of an earlier run: %w", errno(int(ret)))
	}
	return nil
}
