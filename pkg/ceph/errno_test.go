package ceph

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend"
)

// cephErr is a failed librados call as go-ceph returns it.
type cephErr int

func (e cephErr) Error() string  { return syscall.Errno(-e).Error() }
func (e cephErr) ErrorCode() int { return int(e) }

// TestClassify is the one table of how a Ceph errno is answered, for every Ceph backend.
func TestClassify(t *testing.T) {
	hints := Hints{Caps: "CAPS-HINT", Busy: "BUSY-HINT"}
	cases := []struct {
		errno syscall.Errno
		code  backend.Code
		says  string
	}{
		{syscall.ENOENT, backend.NotFound, "not found"},
		{syscall.EEXIST, backend.AlreadyExists, "already exists"},
		{syscall.EINVAL, backend.InvalidArgument, "invalid argument"},
		{syscall.EPERM, backend.FailedPrecondition, "CAPS-HINT"},
		{syscall.EACCES, backend.FailedPrecondition, "CAPS-HINT"},
		{syscall.EBUSY, backend.FailedPrecondition, "BUSY-HINT"},
		{syscall.ENOTEMPTY, backend.FailedPrecondition, "snapshots or clones"},
		{syscall.EAGAIN, backend.Pending, "retry"},
		{syscall.ENOSPC, backend.ResourceExhausted, "out of space"},
		{syscall.EDQUOT, backend.ResourceExhausted, "quota"},
		{syscall.ETIMEDOUT, backend.Unavailable, "did not answer"},
		{syscall.ENOTCONN, backend.Unavailable, "not connected"},
		{syscall.ECONNREFUSED, backend.Unavailable, "refused"},
		{syscall.ESHUTDOWN, backend.Unavailable, "blocklisted"},
		{syscall.EOPNOTSUPP, backend.Unimplemented, "not supported"},
		{syscall.EIO, backend.Internal, "input/output error"},
	}
	for _, tc := range cases {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			cause := fmt.Errorf("wrapped: %w", cephErr(-int(tc.errno)))
			err := Classify(cause, "remove image x", hints)
			if backend.CodeOf(err) != tc.code {
				t.Fatalf("code %v, want %v (%v)", backend.CodeOf(err), tc.code, err)
			}
			if !strings.Contains(err.Error(), "remove image x") || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("message %q does not say what was done and %q", err, tc.says)
			}
			if Errno(err) != tc.errno || !errors.Is(err, cause) {
				t.Fatalf("the cause is lost: %v", err)
			}
		})
	}
	if Classify(nil, "x", hints) != nil {
		t.Fatal("nil error classified")
	}
	pre := backend.Errorf(backend.Unavailable, "deadline")
	if Classify(pre, "x", hints) != pre {
		t.Fatal("an already classified error was reclassified")
	}
	if err := Classify(cephErr(-13), "x", Hints{}); !strings.Contains(err.Error(), "caps") {
		t.Fatalf("permission message without hints says nothing about caps: %v", err)
	}
}

// A compound RADOS operation (rados.ReadOp/WriteOp.Operate) fails with an OperationError,
// which wraps the errno of the operation without an Unwrap: an image whose rbd_id object
// is gone must read as ENOENT, not as an unknown failure (test/rbd's second delete of a
// volume answered "read operation error: op=rados: ret=-2").
func TestErrnoOfACompoundOperation(t *testing.T) {
	err := fmt.Errorf("id of image x: %w", rados.OperationError{OpError: rados.ErrNotFound})
	if n := Errno(err); n != syscall.ENOENT {
		t.Errorf("Errno(%v) = %d, want ENOENT", err, n)
	}
	if n := Errno(rados.OperationError{StepErrors: map[int]error{0: rados.ErrPermissionDenied}}); n != syscall.EPERM {
		t.Errorf("Errno of a failed step = %d, want EPERM", n)
	}
}
