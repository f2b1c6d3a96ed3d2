package rbd

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

// rbdSpec is pool/namespace/image (or image ID), as the rbd CLI and the mgr write it.
func rbdSpec(pool, ns, image string) string {
	if ns == "" { // the mgr refuses pool//image (an adopted image of the default namespace)
		return pool + "/" + image
	}
	return pool + "/" + ns + "/" + image
}

// isBusy reports EBUSY, which Protect answers for a snapshot already protected.
func isBusy(err error) bool {
	return ceph.Errno(err) == syscall.EBUSY
}

// tmpSnapName is the temporary snapshot of a source volume that clone name is made from.
func tmpSnapName(clone string) string { return tmpSnapPrefix + strings.TrimPrefix(clone, imagePrefix) }

// sourceSize is the size a clone of the request's content source starts at (0 without a
// source), read before anything is created so that limits are checked first.
func sourceSize(conn cluster, req *backend.VolumeRequest) (uint64, error) {
	switch {
	case req.SourceSnapshot != nil:
		src := *req.SourceSnapshot
		io, _, err := openVolumePool(conn, src.Volume)
		if err != nil {
			return 0, backend.Errorf(backend.NotFound, "source snapshot %s: %v", src, err)
		}
		defer io.Destroy()
		st, err := readImage(io, volumeImage(src.Volume), true)
		if err != nil {
			return 0, asNotFound(err, src)
		}
		for _, s := range st.snaps {
			if s.Name == snapName(src.SnapHash) {
				return s.Size, nil
			}
		}
		return 0, backend.Errorf(backend.NotFound, "source snapshot %s does not exist", src)
	case req.SourceVolume != nil:
		io, _, err := openVolumePool(conn, *req.SourceVolume)
		if err != nil {
			return 0, backend.Errorf(backend.NotFound, "source volume %s: %v", req.SourceVolume, err)
		}
		defer io.Destroy()
		st, err := readImage(io, volumeImage(*req.SourceVolume), false)
		if err != nil {
			return 0, asNotFound(err, req.SourceVolume)
		}
		return st.size, nil
	}
	return 0, nil
}

// cloneSnapshot clones a CSI snapshot. Snapshots are protected when taken, so this works
// with clone format 1 (clusters whose require-min-compat-client is below mimic) as well as 2.
func (c *Controller) cloneSnapshot(conn cluster, io ioctx, src volid.Snapshot, name string, features uint64) error {
	if src.Backend != c.name {
		return backend.Errorf(backend.InvalidArgument, "source snapshot is on backend %q", src.Backend)
	}
	srcIO, _, err := openVolumePool(conn, src.Volume)
	if err != nil {
		return backend.Errorf(backend.NotFound, "source snapshot %s: %v", src, err)
	}
	defer srcIO.Destroy()
	parent, sn := volumeImage(src.Volume), snapName(src.SnapHash)
	if err := ensureProtected(srcIO, parent, sn); err != nil {
		if backend.IsNotFound(err) {
			return backend.Errorf(backend.NotFound, "source snapshot %s does not exist", src)
		}
		return err
	}
	if err := cloneProtected(srcIO, parent, sn, io, name, features); err != nil {
		return classify(err, fmt.Sprintf("clone %s@%s to %s", parent, sn, name))
	}
	return nil
}

// cloneVolume clones a temporary snapshot of the source volume (kept from an earlier
// attempt of the same request, else taken now). The clone still depends on it until the
// mgr has flattened it (finishVolumeClone).
func (c *Controller) cloneVolume(conn cluster, io ioctx, src volid.Volume, name string, features uint64) error {
	srcIO, _, err := openVolumePool(conn, src)
	if err != nil {
		return backend.Errorf(backend.NotFound, "source volume %s: %v", src, err)
	}
	defer srcIO.Destroy()
	parent, tmp := volumeImage(src), tmpSnapName(name)
	if err := ensureSnap(srcIO, parent, tmp); err != nil {
		if backend.IsNotFound(err) {
			return backend.Errorf(backend.NotFound, "source volume %s does not exist", src)
		}
		return err
	}
	if err := cloneProtected(srcIO, parent, tmp, io, name, features); err != nil {
		return classify(err, fmt.Sprintf("clone %s to %s", parent, name))
	}
	return nil
}

// cloneProtected clones parent@snap, a snapshot ensureSnap or ensureProtected protected. An unprotect whose
// process died (a controller killed while it removed a half-made copy) leaves a snapshot
// "unprotecting": librbd's API still says protected, a protect answers busy, and a clone of
// format 1 (require-min-compat-client below mimic) invalid argument, for ever; the storm
// test's copy failed so for 5 minutes. On that answer the snapshot is unprotected again,
// which finishes the cut unprotect (or, finding a clone, sets it back to protected), then
// protected, and the clone made once more.
func cloneProtected(srcIO ioctx, parent, snap string, dst ioctx, name string, features uint64) error {
	err := srcIO.CloneImage(parent, snap, dst, name, features)
	if ceph.Errno(err) != syscall.EINVAL {
		return err
	}
	if err := inImageRW(srcIO, parent, func(img image) error {
		if err := img.UnprotectSnapshot(snap); err != nil && !isBusy(err) {
			return classify(err, fmt.Sprintf("finish the cut unprotect of snapshot %s@%s", parent, snap))
		}
		if err := img.ProtectSnapshot(snap); err != nil && !isBusy(err) {
			return classify(err, fmt.Sprintf("protect snapshot %s@%s", parent, snap))
		}
		return nil
	}); err != nil {
		return err
	}
	return srcIO.CloneImage(parent, snap, dst, name, features)
}

// ensureSnap takes and protects a snapshot unless it is there; the image is opened for
// writing (a watch on it) only when there is something to do.
func ensureSnap(io ioctx, name, snap string) error {
	var found, prot bool
	err := inImage(io, name, func(img image) (err error) {
		found, prot, err = snapState(img, snap)
		return err
	})
	if err != nil || found && prot {
		return err
	}
	return inImageRW(io, name, func(img image) error {
		if !found {
			if err := img.CreateSnapshot(snap); err != nil {
				return classify(err, fmt.Sprintf("snapshot image %s as %s", name, snap))
			}
		}
		if err := img.ProtectSnapshot(snap); err != nil && !isBusy(err) {
			return classify(err, fmt.Sprintf("protect snapshot %s@%s", name, snap))
		}
		return nil
	})
}

// snapState says whether an image has a snapshot and whether it is protected.
func snapState(img image, snap string) (found, protected bool, err error) {
	names, err := img.Snapshots()
	if err != nil {
		return false, false, classify(err, "list snapshots of "+img.Name())
	}
	for _, s := range names {
		found = found || s.Name == snap
	}
	if !found {
		return false, false, nil
	}
	protected, err = img.SnapshotProtected(snap)
	return true, protected, classify(err, fmt.Sprintf("snapshot %s@%s", img.Name(), snap))
}

// finishVolumeClone makes a clone of a volume independent of its source: the mgr flattens
// it, Pending meanwhile; once it has no parent the temporary snapshot of the source goes.
func finishVolumeClone(ctx context.Context, wait time.Duration, conn cluster, io ioctx, pool, ns, name string, src volid.Volume) error {
	var perr error
	if err := inImage(io, name, func(img image) error {
		_, perr = img.Parent()
		return nil
	}); err != nil {
		return err
	}
	switch {
	case perr == nil:
		spec := rbdSpec(pool, ns, name)
		t, err := queueTask(conn, taskFlatten, spec)
		if err != nil && !backend.IsNotFound(err) {
			return err
		}
		if err == nil && !awaitTask(ctx, wait, func() bool { return !hasParent(io, name) }) {
			waited := backend.LongWait(ctx, "flatten", "image", spec, "source", src.String())
			err = backend.Errorf(backend.Pending, "volume %s is being copied from volume %s by the Ceph mgr (rbd task flatten, %s); retry", spec, src, t.state())
			waited(err)
			return err
		}
	case !isNotFound(perr):
		return classify(perr, "parent of clone "+name)
	}
	srcIO, _, err := openVolumePool(conn, src)
	if err != nil {
		return nil // the source is gone, and its snapshots with it
	}
	defer srcIO.Destroy()
	parent, err := srcIO.OpenImage(volumeImage(src), true)
	if err != nil {
		return nil
	}
	defer parent.Close()
	// Best effort: a snapshot still held (a discarded attempt's clone awaiting its purge) is
	// collected when the source is deleted.
	if err := removeSnap(ctx, 0, conn, parent, tmpSnapName(name)); err != nil && backend.CodeOf(err) != backend.Pending {
		return err
	}
	return nil
}

// ensureProtected protects a CSI snapshot before it is cloned (clone format 1 needs it);
// NotFound when the snapshot does not exist.
func ensureProtected(io ioctx, name, snap string) error {
	var found, prot bool
	err := inImage(io, name, func(img image) (err error) {
		found, prot, err = snapState(img, snap)
		return err
	})
	switch {
	case err != nil:
		return err
	case !found:
		return backend.Errorf(backend.NotFound, "snapshot %s@%s does not exist", name, snap)
	case prot:
		return nil
	}
	return ensureSnap(io, name, snap)
}

// removeSnap unprotects and removes a snapshot whose clones are all independent of it; a
// missing snapshot is fine. Clones still attached are flattened (or, deleted ones, purged)
// by the mgr, and the answer is Pending until they are.
func removeSnap(ctx context.Context, wait time.Duration, conn cluster, img image, snap string) error {
	names, err := img.Snapshots()
	if err != nil {
		return classify(err, "list snapshots of "+img.Name())
	}
	found := false
	for _, s := range names {
		found = found || s.Name == snap
	}
	if !found {
		return nil
	}
	if err := detachChildren(ctx, wait, conn, img, snap); err != nil {
		return err
	}
	if prot, err := img.SnapshotProtected(snap); err == nil && prot {
		if err := img.UnprotectSnapshot(snap); err != nil {
			return stillThere(err, fmt.Sprintf("unprotect snapshot %s@%s", img.Name(), snap))
		}
	}
	err = img.RemoveSnapshot(snap)
	switch {
	case err == nil:
		return nil
	case !isNotFound(err):
		return classify(err, fmt.Sprintf("remove snapshot %s@%s", img.Name(), snap))
	}
	// ENOENT may come from a clone of it vanishing under librbd's feet (the mgr purging
	// it) while the snapshot stays: done only once the image no longer lists it.
	names, lerr := img.Snapshots()
	if lerr != nil {
		return classify(lerr, "list snapshots of "+img.Name())
	}
	for _, n := range names {
		if n.Name == snap {
			return stillThere(err, fmt.Sprintf("remove snapshot %s@%s", img.Name(), snap))
		}
	}
	return nil
}

// stillThere classifies a failure on a snapshot that exists. ENOENT then comes from a
// clone vanishing under librbd's feet (the mgr purging it), not from the snapshot: it
// must not read as "already gone", which callers take for done.
func stillThere(err error, what string) error {
	if isNotFound(err) {
		return backend.Errorf(backend.Pending, "%s: a clone of it is being removed, retry (%v)", what, err)
	}
	return classify(err, what)
}

// detachChildren queues in the mgr what makes every clone of a snapshot independent of it:
// a flatten for a live clone, a purge for one in the trash. It answers Pending while any
// clone remains.
func detachChildren(ctx context.Context, wait time.Duration, conn cluster, img image, snap string) (err error) {
	children, err := listChildren(img, snap)
	if err != nil {
		return err
	}
	if len(children) > 0 {
		waited := backend.LongWait(ctx, "flatten", "image", img.Name(), "snapshot", snap, "clones", len(children))
		defer func() { waited(err) }()
	}
	var states []string
	for _, ch := range children {
		action, spec := taskFlatten, rbdSpec(ch.PoolName, ch.PoolNamespace, ch.ImageName)
		if ch.Trash {
			action, spec = taskTrashRemove, rbdSpec(ch.PoolName, ch.PoolNamespace, ch.ImageID)
		} else if gone, err := checkFlattenable(conn, ch, img.Name(), snap); err != nil {
			return err
		} else if gone {
			continue // a clone removed since the listing, or one whose creation was cut short
		}
		state := "detaching"
		t, err := queueTask(conn, action, spec)
		switch {
		case err == nil:
			state = t.state()
		case !backend.IsNotFound(err):
			return err
		}
		// Listed but nothing left to queue: the mgr is finishing (a flattened clone is
		// detached a moment after it loses its parent); removing the snapshot now would
		// only move it to librbd's snapshot trash.
		states = append(states, fmt.Sprintf("%s %s: %s", action, spec, state))
	}
	if len(states) > 0 && !awaitTask(ctx, wait, func() bool { return !hasChildren(img, snap) }) {
		return backend.Errorf(backend.Pending, "snapshot %s@%s still has %d clone(s) depending on it; the Ceph mgr is making them independent (%s); retry",
			img.Name(), snap, len(states), strings.Join(states, "; "))
	}
	return nil
}

// listChildren lists the clones of a snapshot the image has. librbd reads the clones
// attached to the snapshot, then looks their names up in the directory and the trash: a
// clone the mgr purges in between fails the lookup with ENOENT. That is not the snapshot
// gone (NotFound, which callers take for done): the listing is read again, and a lasting
// ENOENT answers Pending.
func listChildren(img image, snap string) ([]librbd.ImageSpec, error) {
	for attempt := 1; ; attempt++ {
		children, err := img.Children(snap)
		switch {
		case err == nil:
			return children, nil
		case !isNotFound(err) || attempt == 3:
			return nil, stillThere(err, fmt.Sprintf("list clones of %s@%s", img.Name(), snap))
		}
	}
}

// hasParent reports whether an image still depends on a parent (true when unsure).
func hasParent(io ioctx, name string) bool {
	img, err := io.OpenImage(name, false)
	if err != nil {
		return !isNotFound(err)
	}
	defer img.Close()
	_, err = img.Parent()
	return !isNotFound(err)
}

// hasChildren reports whether a snapshot still has clones (true when unsure).
func hasChildren(img image, snap string) bool {
	children, err := img.Children(snap)
	return err != nil || len(children) > 0
}

// checkFlattenable refuses a clone that no flatten can detach: one whose own snapshots
// still share the parent's data (no deep-flatten), so only deleting them helps. gone is
// set when the clone cannot be opened.
func checkFlattenable(conn cluster, ch librbd.ImageSpec, parent, snap string) (gone bool, err error) {
	io, err := openPool(conn, ch.PoolName, ch.PoolNamespace)
	if err != nil {
		return false, err
	}
	defer io.Destroy()
	child, err := io.OpenImage(ch.ImageName, false)
	if err != nil {
		if isNotFound(err) {
			return true, nil
		}
		return false, classify(err, "open clone "+ch.ImageName)
	}
	defer child.Close()
	if _, err := child.Parent(); !isNotFound(err) {
		return false, nil
	}
	// No parent any more: either the flatten is being finished, or the clone's own
	// snapshots still share the parent's data (no deep-flatten) and only deleting them helps.
	if snaps, err := child.Snapshots(); err == nil && len(snaps) > 0 {
		return false, backend.Errorf(backend.FailedPrecondition, "snapshot %s@%s is still used by snapshots of volume image %s/%s/%s; delete those VolumeSnapshots first",
			parent, snap, ch.PoolName, ch.PoolNamespace, ch.ImageName)
	}
	return false, nil
}
