package ceph

import (
	"errors"
	"syscall"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend"
)

// Errno returns the positive errno of a failed librados/librbd call or mon/mgr command,
// 0 when err carries none.
func Errno(err error) syscall.Errno {
	// A compound operation's error wraps the operation's errno, or its steps', with no
	// Unwrap.
	var op rados.OperationError
	if errors.As(err, &op) {
		if n := Errno(op.OpError); n != 0 || op.OpError != nil {
			return n
		}
		for _, step := range op.StepErrors {
			if n := Errno(step); n != 0 {
				return n
			}
		}
		return 0
	}
	var coded interface{ ErrorCode() int }
	if !errors.As(err, &coded) {
		return 0
	}
	n := coded.ErrorCode()
	if n < 0 {
		n = -n
	}
	return syscall.Errno(n)
}

// Hints are what a backend adds to the classified message: the part of a fix that depends
// on the kind of storage. The classification itself is the same for every backend.
type Hints struct {
	// Caps says which cephx capabilities the user needs (permission denied).
	Caps string
	// Busy says who may hold an object busy and how to release it.
	Busy string
}

// errnoRule is how one errno is answered: a code and the text that says what it means.
type errnoRule struct {
	code backend.Code
	text func(Hints) string
}

func fixed(s string) func(Hints) string { return func(Hints) string { return s } }

// errnoRules has one rule per errno, for every Ceph backend.
var errnoRules = map[syscall.Errno]errnoRule{
	syscall.ENOENT:       {backend.NotFound, fixed("not found")},
	syscall.EEXIST:       {backend.AlreadyExists, fixed("already exists")},
	syscall.EINVAL:       {backend.InvalidArgument, fixed("invalid argument")},
	syscall.EPERM:        {backend.FailedPrecondition, permission},
	syscall.EACCES:       {backend.FailedPrecondition, permission},
	syscall.EBUSY:        {backend.FailedPrecondition, busy},
	syscall.ENOTEMPTY:    {backend.FailedPrecondition, fixed("not empty: it still has snapshots or clones")},
	syscall.EAGAIN:       {backend.Pending, fixed("Ceph is busy with this object; retry")},
	syscall.ENOSPC:       {backend.ResourceExhausted, fixed("out of space or over the pool quota")},
	syscall.EDQUOT:       {backend.ResourceExhausted, fixed("out of space or over the pool quota")},
	syscall.ETIMEDOUT:    {backend.Unavailable, fixed("Ceph did not answer in time")},
	syscall.ENOTCONN:     {backend.Unavailable, fixed("not connected to Ceph")},
	syscall.ECONNREFUSED: {backend.Unavailable, fixed("Ceph refused the connection")},
	syscall.ESHUTDOWN:    {backend.Unavailable, fixed("the cluster has blocklisted this client; the connection is replaced, retry")},
	syscall.EOPNOTSUPP:   {backend.Unimplemented, fixed("not supported by this Ceph cluster")},
}

func permission(h Hints) string {
	if h.Caps == "" {
		return "permission denied; check the cephx user's caps and key"
	}
	return "permission denied; check the cephx key and give the user " + h.Caps
}

func busy(h Hints) string {
	if h.Busy == "" {
		return "busy, in use by a client"
	}
	return "busy, " + h.Busy
}

// Classify turns a failed Ceph call made while doing what into a StorageError whose code
// follows errnoRules. Errors already classified (deadlines, credentials) pass through.
func Classify(err error, what string, h Hints) error {
	if err == nil {
		return nil
	}
	var se *backend.StorageError
	if errors.As(err, &se) {
		return err
	}
	if rule, ok := errnoRules[Errno(err)]; ok {
		return backend.Errorf(rule.code, "%s: %s (%w)", what, rule.text(h), err)
	}
	return backend.Errorf(backend.Internal, "%s: %w", what, err)
}
