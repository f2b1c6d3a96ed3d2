package rbd

import (
	"fmt"
	"strings"
	"time"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// notifyTimeout bounds the notify that finds which watchers of an image are alive.
const notifyTimeout = 3 * time.Second

// A client killed while it registers a watch (a controller SIGKILLed while opening an
// image for writing) can leave the watch recorded on the image header while the OSD has
// no live watch for it: the record never times out until the OSD reloads the object, and
// librbd refuses to remove an image with watchers. A notify reaches only live watches, so
// a watcher that neither answers nor times out is such a record.

// watchState is who watches an image header: the clients that answered a notify or
// timed out on it (alive, or dead less than 30 s), the live watches of this controller's
// own client (an open of its own still running, such as librbd's trash move), and the
// watchers only recorded, this controller's own included: an open of its own that timed
// out while the OSD was stopped can leave its watch recorded after the client gave it up.
type watchState struct {
	id                 string
	live, own, records []librbd.ImageWatcher
}

// readWatches lists an image's watchers and tells the live ones from the stale records.
func readWatches(conn cluster, io ioctx, name string) (st *watchState, err error) {
	err = inImage(io, name, func(img image) (err error) {
		st, err = readWatchesOf(conn, io, img, name)
		return err
	})
	return st, err
}

// readWatchesOf is readWatches for an image opened read-only (by name or, in the trash,
// by ID).
func readWatchesOf(conn cluster, io ioctx, img image, name string) (*watchState, error) {
	id, err := img.ID()
	if err != nil {
		return nil, classify(err, "id of image "+name)
	}
	watchers, err := img.Watchers()
	if err != nil {
		return nil, classify(err, "list clients of "+name)
	}
	st := &watchState{id: id}
	if len(watchers) == 0 {
		return st, nil
	}
	answered, err := askWatchers(io, id)
	if err != nil {
		return nil, classify(err, "ask the clients of "+name)
	}
	for _, w := range watchers {
		switch {
		case !answered[[2]uint64{uint64(w.Id), w.Cookie}]:
			st.records = append(st.records, w)
		case uint64(w.Id) == conn.InstanceID():
			st.own = append(st.own, w)
		default:
			st.live = append(st.live, w)
		}
	}
	return st, nil
}

// askWatchers notifies the header of image id: the watches that answer, or time out (alive,
// or dead less than 30 s), by client ID and cookie.
func askWatchers(io ioctx, id string) (map[[2]uint64]bool, error) {
	acks, timeouts, err := io.Notify("rbd_header."+id, notifyTimeout)
	if err != nil && len(acks)+len(timeouts) == 0 {
		return nil, err
	}
	answered := map[[2]uint64]bool{}
	for _, a := range acks {
		answered[[2]uint64{uint64(a.NotifierID), uint64(a.WatcherID)}] = true
	}
	for _, t := range timeouts {
		answered[[2]uint64{uint64(t.NotifierID), uint64(t.WatcherID)}] = true
	}
	return answered, nil
}

// dropStaleRecords rewrites the image header without its watch records, in one atomic
// operation that fails if the header changed since it was read. It is done only when no
// watch on the header is alive at all, this controller's included.
func dropStaleRecords(io ioctx, name string, st *watchState) error {
	if len(st.records) == 0 || len(st.live)+len(st.own) > 0 {
		return nil
	}
	oid := "rbd_header." + st.id
	cp, err := io.ReadObject(oid)
	if err != nil || cp.size != 0 {
		return classify(err, "read header of "+name)
	}
	if err := io.ReplaceObject(oid, cp); err != nil {
		return classify(err, fmt.Sprintf("drop stale watches (%s) from the header of %s", describe(st.records), name))
	}
	return nil
}

// checkUnused refuses to remove an image a live client has open (a node that has not
// unstaged it; a killed client lets go after 30 s), or a client of this controller (see
// leakedOpen), and drops stale watch records, which would block the removal for ever.
func (c *Controller) checkUnused(conn cluster, io ioctx, name string, id volid.Volume, st *watchState) error {
	if c.leakedOpen(conn, name, st) {
		return backend.Errorf(backend.Unavailable, "volume %s is open in this controller's own Ceph client (%s), which nothing of the delete has open: an image librbd left open when an earlier call failed, or an earlier attempt still running; the client is being replaced, which closes it (Ceph lets go of its watch within a minute); retry", id, describe(st.own))
	}
	if old := c.retiredWatches(st); len(old) > 0 {
		return backend.Errorf(backend.Unavailable, "volume %s is still watched by %s, a client of this controller replaced because librbd left the image open on it; Ceph lets go of its watch within a minute of its shutdown; retry", id, describe(old))
	}
	if len(st.live) > 0 {
		return backend.Errorf(backend.FailedPrecondition, "volume %s is still open by %s; unstage it on its node first (a crashed client lets go after 30 s)", id, describe(st.live))
	}
	return dropStaleRecords(io, name, st)
}

// leakedOpen has the client replaced, and says so, when it watches an image that no call
// of this delete or sweep has open. librbd leaves open the image its trash move opened
// when a read after the open fails (Ceph's Trash::move returns mirror_image_get's error
// without closing it: an OSD frozen past the op timeout, a corrupt mirroring record); the
// open's watch then lives as long as the client, nothing can close it, and the mgr's purge
// fails busy on it for ever. The client's shutdown lets go of it. An earlier attempt still
// running (abandoned at its deadline) also shows as such a watch: replacing the client
// costs one connect, and the old one is shut down only once that attempt has returned.
func (c *Controller) leakedOpen(conn cluster, name string, st *watchState) bool {
	if len(st.own) == 0 {
		return false
	}
	c.mu.Lock()
	if c.retired == nil {
		c.retired = map[uint64]time.Time{}
	}
	for id, at := range c.retired {
		if time.Since(at) > retiredWatchWait {
			delete(c.retired, id)
		}
	}
	c.retired[conn.InstanceID()] = time.Now()
	c.mu.Unlock()
	conn.Replace(fmt.Sprintf("it holds image %s open with no call of ours on it (%s)", name, describe(st.own)))
	return true
}

// retiredWatchWait is how long the live watches of a client leakedOpen replaced are taken
// for its (the client is shut down once its last call returns, and Ceph drops a watch
// 30 s after its client went, 60 s at most here), not for a node's.
const retiredWatchWait = 10 * time.Minute

// retiredWatches are the live watches of st held by clients leakedOpen replaced.
func (c *Controller) retiredWatches(st *watchState) []librbd.ImageWatcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []librbd.ImageWatcher
	for _, w := range st.live {
		if _, ok := c.retired[uint64(w.Id)]; ok {
			out = append(out, w)
		}
	}
	return out
}

func describe(ws []librbd.ImageWatcher) string {
	var out []string
	for _, w := range ws {
		d := fmt.Sprintf("client.%d", w.Id)
		if w.Addr != "" { // a notify's answer names no address
			d += " at " + w.Addr
		}
		out = append(out, d)
	}
	return strings.Join(out, ", ")
}
