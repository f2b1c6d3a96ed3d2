package rbd

import (
	"syscall"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

type errnoErr int

func (e errnoErr) Error() string  { return syscall.Errno(-e).Error() }
func (e errnoErr) ErrorCode() int { return int(e) }

// The same errno gets the same code on RBD as on CephFS (cephfs TestClassify has the same
// table; pkg/ceph TestClassify has the rules).
func TestClassify(t *testing.T) {
	cases := []struct {
		errno syscall.Errno
		want  backend.Code
	}{
		{syscall.ENOENT, backend.NotFound}, {syscall.EEXIST, backend.AlreadyExists},
		{syscall.EINVAL, backend.InvalidArgument}, {syscall.EPERM, backend.FailedPrecondition},
		{syscall.EACCES, backend.FailedPrecondition}, {syscall.EBUSY, backend.FailedPrecondition},
		{syscall.ENOTEMPTY, backend.FailedPrecondition}, {syscall.EAGAIN, backend.Pending},
		{syscall.ENOSPC, backend.ResourceExhausted}, {syscall.EDQUOT, backend.ResourceExhausted},
		{syscall.ETIMEDOUT, backend.Unavailable}, {syscall.ESHUTDOWN, backend.Unavailable},
		{syscall.ECONNREFUSED, backend.Unavailable}, {syscall.EOPNOTSUPP, backend.Unimplemented},
		{syscall.EIO, backend.Internal},
	}
	for _, tc := range cases {
		if got := backend.CodeOf(classify(errnoErr(-int(tc.errno)), "x")); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.errno, got, tc.want)
		}
	}
}
