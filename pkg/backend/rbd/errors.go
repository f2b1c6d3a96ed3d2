package rbd

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

// rbdHints complete the shared Ceph errno rules for images.
var rbdHints = ceph.Hints{
	Caps: `rbd caps on the pool (mon "profile rbd, allow command \"mgr dump\"", osd "profile rbd pool=<pool>", mgr "profile rbd pool=<pool>")`,
	Busy: "the image is still mapped or watched by a client; unstage it on its node first",
}

// classify turns a librados/librbd error into a StorageError that says what to do.
func classify(err error, what string) error { return ceph.Classify(err, what, rbdHints) }

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, librbd.ErrNotFound) || errors.Is(err, rados.ErrNotFound) || ceph.Errno(err) == syscall.ENOENT
}

func asNotFound(err error, id fmt.Stringer) error {
	if backend.IsNotFound(err) {
		return backend.Errorf(backend.NotFound, "%s does not exist: %v", id, err)
	}
	return err
}
