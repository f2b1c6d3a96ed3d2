package cephfs

import (
	"errors"
	"syscall"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

func isErrno(err error, n syscall.Errno) bool { return err != nil && ceph.Errno(err) == n }

// cephfsHints complete the shared Ceph errno rules for subvolumes.
var cephfsHints = ceph.Hints{
	Caps: `mgr "allow rw" and mds/osd caps on the filesystem`,
	Busy: "a client still uses it",
}

// classify turns a Ceph failure while doing what into a StorageError saying what to fix:
// a mgr without the command is Unimplemented, the rest follows the shared errno rules.
func classify(err error, what string) error {
	var ni admin.NotImplementedError
	if errors.As(err, &ni) {
		return backend.Errorf(backend.Unimplemented, "%s: the Ceph mgr does not know this command (%v); shiphold needs Ceph 16.2.7 or newer with the mgr volumes module", what, err)
	}
	return ceph.Classify(err, what, cephfsHints)
}
