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
// timed out on it (alive, or dead less than 30 s), and the watchers only recorded.
type watchState struct {
	id            string
	live, records []librbd.ImageWatcher
}

// readWatches lists an image's watchers and tells the live ones from the stale records;
// watchers of the controller's own client are left out.
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
	acks, timeouts, err := io.Notify("rbd_header."+id, notifyTimeout)
	if err != nil && len(acks)+len(timeouts) == 0 {
		return nil, classify(err, "ask the clients of "+name)
	}
	answered := map[[2]uint64]bool{}
	for _, a := range acks {
		answered[[2]uint64{uint64(a.NotifierID), uint64(a.WatcherID)}] = true
	}
	for _, t := range timeouts {
		answered[[2]uint64{uint64(t.NotifierID), uint64(t.WatcherID)}] = true
	}
	for _, w := range watchers {
		switch {
		case uint64(w.Id) == conn.InstanceID():
		case answered[[2]uint64{uint64(w.Id), w.Cookie}]:
			st.live = append(st.live, w)
		default:
			st.records = append(st.records, w)
		}
	}
	return st, nil
}

// dropStaleRecords rewrites the image header without its watch records, in one atomic
// operation that fails if the header changed since it was read. It is done only when no
// watch on the header is alive at all, this controller's included.
func dropStaleRecords(io ioctx, name string, st *watchState) error {
	if len(st.records) == 0 || len(st.live) > 0 {
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
// unstaged it; a killed client lets go after 30 s) and drops stale watch records, which
// would block the removal for ever.
func checkUnused(io ioctx, name string, id volid.Volume, st *watchState) error {
	if len(st.live) > 0 {
		return backend.Errorf(backend.FailedPrecondition, "volume %s is still open by %s; unstage it on its node first (a crashed client lets go after 30 s)", id, describe(st.live))
	}
	return dropStaleRecords(io, name, st)
}

func describe(ws []librbd.ImageWatcher) string {
	var out []string
	for _, w := range ws {
		out = append(out, fmt.Sprintf("client.%d at %s", w.Id, w.Addr))
	}
	return strings.Join(out, ", ")
}
