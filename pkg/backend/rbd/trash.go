package rbd

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	librbd "github.com/ceph/go-ceph/rbd"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

// An image is removed in two steps that each survive a crash: it moves to the RBD trash
// (one cls call; an interrupted move is finished by the next one), keeping its name there,
// and the mgr purges the trash entry in the background. librbd's own remove, cut short,
// leaves a directory entry whose image cannot be opened, which a retry took for "gone".

// discard moves an image, or what is left of one under that name, to the trash and queues
// the purge of every trash entry of that name.
func discard(conn cluster, io ioctx, pool, ns, name string) error {
	// Stale watch records would block the purge; live ones are waited out by the mgr.
	if st, err := readWatches(conn, io, name); err == nil {
		if err := dropStaleRecords(io, name, st); err != nil {
			return err
		}
	}
	return moveToTrash(conn, io, pool, ns, name)
}

// moveToTrash is discard for an image whose stale watch records are already dropped.
func moveToTrash(conn cluster, io ioctx, pool, ns, name string) error {
	err := io.TrashImage(name)
	if isNotFound(err) {
		// No image, or one librbd's own remove left half removed (its id object gone),
		// which cannot move to the trash: librbd's remove finishes what it began.
		err = io.RemoveImage(name)
	}
	if err != nil && !isNotFound(err) {
		return classify(err, fmt.Sprintf("move image %s to the trash", rbdSpec(pool, ns, name)))
	}
	return purgeTrashed(conn, io, pool, ns, name)
}

// trashImage is moveToTrash for an image whose ID is known. The move runs alone (the
// delete's longest call: on a busy OSD the reads once made beside it slowed it by more than
// they saved); once the image has moved, the purge of its entry is queued by its ID (or
// held while the mgr's queue is full: purgefeed.go) while moved (unless nil) runs. The
// trash is not listed: a burst of deletes fills it, and each listing read it all (make
// bench-scale: the last tenth of 10,000 deletes ran at a fifth of the first tenth's rate).
// Entries of the name an earlier attempt left unqueued (it died between its move and its
// queueing) are the sweep's, at start-up and every collectInterval.
func (c *Controller) trashImage(conn cluster, io ioctx, pool, ns, name, id string, moved func() error) error {
	err := io.TrashImage(name)
	switch {
	case isNotFound(err):
		return moveToTrash(conn, io, pool, ns, name)
	case err != nil:
		return classify(err, fmt.Sprintf("move image %s to the trash", rbdSpec(pool, ns, name)))
	}
	after := start(func() (struct{}, error) {
		if moved == nil {
			return struct{}{}, nil
		}
		return struct{}{}, moved()
	})
	_, err = c.queuePurge(conn, rbdSpec(pool, ns, id))
	if backend.IsNotFound(err) {
		err = nil
	}
	if _, aerr := after.wait(); err == nil {
		err = aerr
	}
	return err
}

// purgeTrashed queues the purge of the trash entries named name.
func purgeTrashed(conn cluster, io ioctx, pool, ns, name string) error {
	entries, err := io.TrashEntries()
	return purgeListed(conn, pool, ns, name, entries, err)
}

// purgeListed queues the purge of the listed trash entries named name.
func purgeListed(conn cluster, pool, ns, name string, entries []librbd.TrashInfo, err error) error {
	if err != nil && !isNotFound(err) {
		return classify(err, "list the RBD trash of "+pool+"/"+ns)
	}
	for _, e := range entries {
		if e.Name != name {
			continue
		}
		if _, err := queueTask(conn, taskTrashRemove, rbdSpec(pool, ns, e.Id)); err != nil && !backend.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// sortSnaps tells an image's CSI snapshots from the temporary ones clones of it were made
// from. Snapshots in librbd's trash namespace (removed while a clone still counted on them)
// go with the image and are in neither.
func sortSnaps(img image, snaps []librbd.SnapInfo) (csiSnaps, tmpSnaps []string) {
	for _, s := range snaps {
		switch trashed, err := img.InSnapTrash(s.Id); {
		case err == nil && trashed:
		case strings.HasPrefix(s.Name, tmpSnapPrefix):
			tmpSnaps = append(tmpSnaps, s.Name)
		default:
			csiSnaps = append(csiSnaps, s.Name)
		}
	}
	return csiSnaps, tmpSnaps
}

// dropTemporarySnaps removes the temporary snapshots clones of the volume were made from,
// and refuses a volume that still has CSI snapshots: they live on the image.
func dropTemporarySnaps(ctx context.Context, conn cluster, io ioctx, name string, id volid.Volume, csiSnaps, tmpSnaps []string) error {
	if len(csiSnaps) > 0 {
		return backend.Errorf(backend.FailedPrecondition, "volume %s (image %s) still has %d snapshot(s) (%s); delete its VolumeSnapshots first — rbd snapshots live on the volume",
			id, name, len(csiSnaps), strings.Join(csiSnaps, ", "))
	}
	if len(tmpSnaps) == 0 {
		return nil
	}
	return inImageRW(io, name, func(img image) error {
		for _, s := range tmpSnaps {
			if err := removeSnap(ctx, 0, conn, img, s); err != nil {
				return err
			}
		}
		return nil
	})
}

// Leftovers lists what this backend's deletes left on the way out: images in the trash
// (with the state of their purge) and temporary clone snapshots.
func (c *Controller) Leftovers(ctx context.Context) ([]backend.Leftover, error) {
	return c.leftovers(ctx, false, false, "")
}

// CollectSnapshots removes the temporary clone snapshots of one tenant's images ("" for
// all) whose clone is gone, and lists those a clone in progress still needs: shipholdctl gc
// --confirm runs it (the periodic Collect leaves snapshots: finding them reads every image).
func (c *Controller) CollectSnapshots(ctx context.Context, tenant string) ([]backend.Leftover, error) {
	return c.leftovers(ctx, false, true, tenant)
}

// Collect queues the purge of this backend's trash entries that have none (a controller
// died between the move and the queueing) and unblocks purges that stale watch records
// hold up. The controller runs it at start-up and then now and then.
func (c *Controller) Collect(ctx context.Context) ([]backend.Leftover, error) {
	return c.leftovers(ctx, true, false, "")
}

// leftovers lists (collect: and collects) the trash entries, or with snaps only the
// temporary snapshots of tenant ("" for all), which it removes where their clone is gone.
func (c *Controller) leftovers(ctx context.Context, collect, snaps bool, tenant string) ([]backend.Leftover, error) {
	var byID map[string]*mgrTask
	var spaces [][2]string
	err := c.storage.Do(ctx, nil, func(conn connection) error {
		tasks, err := listTasks(conn)
		if err != nil {
			return err
		}
		byID = map[string]*mgrTask{}
		for i := range tasks {
			byID[tasks[i].Refs.Pool+"/"+tasks[i].Refs.Namespace+"/"+tasks[i].Refs.ImageID] = &tasks[i]
		}
		return c.eachNamespace(conn, tenant, func(_ ioctx, pool, ns string) error {
			spaces = append(spaces, [2]string{pool, ns})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	// A call per namespace: a sweep of many tenants never holds one connection for long, so
	// a connection retired meanwhile (a rotated key, a blocklisted client) is shut down soon.
	var out []backend.Leftover
	for _, sp := range spaces {
		// got is the call's own: an abandoned call (past ctx's deadline) writes nothing read.
		var got []backend.Leftover
		err := c.storage.Do(ctx, nil, func(conn connection) error {
			io, err := openPool(conn, sp[0], sp[1])
			if err != nil {
				return err
			}
			defer io.Destroy()
			if snaps {
				found, err := c.snapLeftovers(ctx, conn, io, sp[0], sp[1], true)
				got = append(got, found...)
				return err
			}
			found, err := c.trashLeftovers(conn, io, sp[0], sp[1], byID, collect)
			got = append(got, found...)
			if err != nil || collect {
				// The start-up sweep leaves snapshots alone: reading every image at every
				// start costs too much, and a source's delete collects them.
				return err
			}
			found, err = c.snapLeftovers(ctx, conn, io, sp[0], sp[1], false)
			got = append(got, found...)
			return err
		})
		if err != nil {
			return out, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// trashLeftovers lists the namespace's trash entries of this backend's images.
func (c *Controller) trashLeftovers(conn cluster, io ioctx, pool, ns string, tasks map[string]*mgrTask, collect bool) ([]backend.Leftover, error) {
	entries, err := io.TrashEntries()
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, classify(err, "list the RBD trash of "+pool+"/"+ns)
	}
	var out []backend.Leftover
	for _, e := range entries {
		if volumeHashOf(e.Name) == "" || !c.ownsTrashed(io, e.Id) {
			continue
		}
		spec := rbdSpec(pool, ns, e.Id)
		l := backend.Leftover{Backend: c.name, Tenant: ns, Kind: "trash entry", Name: spec + " (image " + e.Name + ")", State: "purge not queued"}
		if t, ok := tasks[spec]; ok {
			l.State = "purge " + t.state()
			if collect && t.RetryMessage != "" && !t.InProgress {
				// A failed purge waits for the mgr's next retry, 30 s times its attempts and
				// up to 5 min away, though what failed it (an OSD out, ops timed out) may be
				// gone: clear what is known to block it and start it again now.
				c.unblockPurge(conn, io, e.Id, spec, t)
				if cancelTask(conn, t.ID) == nil {
					queueTask(conn, taskTrashRemove, spec)
				}
			}
		} else if c.purges.isHeld(spec) {
			l.State = purgeWaiting
		} else if collect {
			t, err := c.queuePurge(conn, spec)
			switch {
			case err == nil && t == nil:
				l.State = purgeWaiting
			case err == nil && t.RetryAttempts > 0 && !t.InProgress:
				l.State = c.purgeReplayed(io, e.Id, t)
			case err == nil:
				l.State = "purge " + t.state()
			case !backend.IsNotFound(err):
				return out, err
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// purgeReplayed removes a trash entry the mgr will not purge: asked to, it answered with a
// task that has run already and is in its queue no more. The mgr answers a task add with
// the same task among the last 50 it finished (its guard against a replayed command), so
// an entry that outlived a finished purge (a killed controller's delete, retried, moved the
// image's name to the trash again as the purge ran: the storm test) is never purged by it
// until 50 other tasks finish. The controller removes it itself, once, as the mgr would
// have; the answer is the leftover's state.
func (c *Controller) purgeReplayed(io ioctx, id string, t *mgrTask) string {
	err := io.RemoveTrashed(id)
	if ceph.Errno(err) == syscall.EUCLEAN {
		// Put back by a move cut short ("moving").
		finishCutMove(io, id)
		err = io.RemoveTrashed(id)
	}
	if err != nil && !isNotFound(err) {
		klog.ErrorS(err, "remove a trash entry the mgr will not purge (it answered a finished task); the next sweep tries again", "backend", c.name, "id", id, "task", t.ID)
		return "purge finished by the mgr, entry left; removing it failed: " + err.Error()
	}
	klog.InfoS("removed a trash entry the mgr answered a finished purge for", "backend", c.name, "id", id, "task", t.ID)
	return "removed by the controller (the mgr's purge of it had finished)"
}

// unblockPurge clears, best effort, what is known to make the mgr's purge of a trash entry
// fail: stale watch records (EBUSY), or a move to the trash cut short by a killed
// controller, left in state "moving" (EUCLEAN): librbd only completes such a move by image
// name, which a new volume of the same name may hold by now, so the entry's state is set
// as the move would have set it.
func (c *Controller) unblockPurge(conn cluster, io ioctx, id, spec string, t *mgrTask) {
	switch {
	case strings.Contains(t.RetryMessage, "busy"):
		c.dropTrashedStaleRecords(conn, io, id, spec)
	case strings.Contains(t.RetryMessage, "errno 117"):
		finishCutMove(io, id)
	}
}

// finishCutMove sets a trash entry a cut move left "moving" to "normal", as the move
// would have (cls_rbd trash_state_set(id, NORMAL, expecting MOVING)); best effort.
func finishCutMove(io ioctx, id string) {
	io.Exec("rbd_trash", "trash_state_set", append(encodeString(id), 0, 1))
}

// dropTrashedStaleRecords drops the stale watch records that block a trashed image's
// purge (see watch.go), and has the client replaced if it is the one holding the image
// open (leakedOpen: nothing of ours opens a trashed image for writing); best effort, the
// next sweep tries again.
func (c *Controller) dropTrashedStaleRecords(conn cluster, io ioctx, id, spec string) {
	img, err := io.OpenTrashed(id)
	if err != nil {
		return
	}
	st, err := readWatchesOf(conn, io, img, spec)
	img.Close()
	if err == nil && !c.leakedOpen(conn, spec, st) {
		dropStaleRecords(io, spec, st)
	}
}

// ownsTrashed reads a trashed image's record: this backend's, or no record (a create cut
// short, named like ours).
func (c *Controller) ownsTrashed(io ioctx, id string) bool {
	img, err := io.OpenTrashed(id)
	if err != nil {
		return true
	}
	defer img.Close()
	raw, err := img.Metadata(recordKey)
	if err != nil {
		return true
	}
	r, err := decodeRecord(raw)
	return err != nil || r.Backend == c.name
}

// snapLeftovers lists temporary clone snapshots on this backend's images; with drop it
// removes those whose clone is gone instead of listing them.
func (c *Controller) snapLeftovers(ctx context.Context, conn cluster, io ioctx, pool, ns string, drop bool) ([]backend.Leftover, error) {
	names, err := io.ImageNames()
	if err != nil {
		return nil, nil
	}
	var out []backend.Leftover
	for _, n := range names {
		st, err := readImage(io, n, true)
		if err != nil || volumeHashOf(n) == "" || !st.hasRecord || st.record.Backend != c.name {
			continue
		}
		for _, s := range st.snaps {
			if !strings.HasPrefix(s.Name, tmpSnapPrefix) {
				continue
			}
			clone := imagePrefix + strings.TrimPrefix(s.Name, tmpSnapPrefix)
			l := backend.Leftover{Backend: c.name, Tenant: ns, Kind: "temporary snapshot", Name: rbdSpec(pool, ns, n) + "@" + s.Name,
				State: "clone " + clone + " in progress; removed when it is done or the volume is deleted"}
			if _, err := readImage(io, clone, false); backend.IsNotFound(err) {
				l.State = "clone " + clone + " gone; removed when the volume is deleted"
				if drop {
					if err := dropSnap(ctx, conn, io, n, s.Name); err != nil {
						return out, err
					}
					continue
				}
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// dropSnap removes one snapshot of image name, as a clone's own cleanup would.
func dropSnap(ctx context.Context, conn cluster, io ioctx, name, snap string) error {
	return inImageRW(io, name, func(img image) error {
		return removeSnap(ctx, 0, conn, img, snap)
	})
}
