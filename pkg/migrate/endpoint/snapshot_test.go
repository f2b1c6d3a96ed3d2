package endpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/migrate/memfs"
	"github.com/shiphold/shiphold/pkg/volid"
)

// snapshots is a controller that keeps snapshots in memory and logs every call in order.
type snapshots struct {
	backend.Controller
	snaps     map[volid.Snapshot]string // the snapshot's CSI name
	log       []string
	createErr error
	pending   int // DeleteSnapshot answers Pending this many times first (clones still detaching)
}

func (c *snapshots) CreateSnapshot(_ context.Context, src volid.Volume, name string, _, _ map[string]string) (*backend.Snapshot, error) {
	c.log = append(c.log, "create "+name)
	if c.createErr != nil {
		return nil, c.createErr
	}
	id := volid.Snapshot{Volume: src, SnapHash: volid.Hash(name)}
	if _, ok := c.snaps[id]; ok {
		// A backend answers an existing name with the existing (stale) snapshot.
		return &backend.Snapshot{ID: id, Ready: true}, nil
	}
	c.snaps[id] = name
	return &backend.Snapshot{ID: id, Ready: true}, nil
}

func (c *snapshots) DeleteSnapshot(_ context.Context, id volid.Snapshot, _ map[string]string) error {
	if _, ok := c.snaps[id]; ok && c.pending > 0 {
		c.pending--
		c.log = append(c.log, "delete pending")
		return backend.Errorf(backend.Pending, "snapshot still has 1 clone(s) depending on it; retry")
	}
	if name, ok := c.snaps[id]; ok {
		c.log = append(c.log, "delete "+name)
		delete(c.snaps, id)
	}
	return nil
}

var siteVol = &backend.Volume{ID: volid.Volume{Backend: "ceph-fs", Tenant: "shop", Hash: "0123456789abcdef"}}

func snapEnv() (*Env, *snapshots) {
	return &Env{Session: "shiphold-migrate-abc"}, &snapshots{snaps: map[volid.Snapshot]string{}}
}

func TestSourceSnapshotIsTakenReadAndRemoved(t *testing.T) {
	e, c := snapEnv()
	name := e.SnapshotName(siteVol.ID)
	if !strings.HasPrefix(name, SnapshotPrefix) {
		t.Fatalf("snapshot name %q lacks %q", name, SnapshotPrefix)
	}
	var read volid.Snapshot
	closed := false
	s, err := e.fromSnapshot(context.Background(), c, siteVol, func(snap *backend.Snapshot) (*Side, error) {
		if _, ok := c.snaps[snap.ID]; !ok {
			t.Fatal("opened a snapshot the backend does not hold")
		}
		read = snap.ID
		in := &Side{FS: memfs.New(LimitsOf(backend.KindCephFS)), What: "snap"}
		in.onClose(func() error {
			if _, ok := c.snaps[read]; !ok {
				t.Error("the snapshot was removed before its reader closed")
			}
			closed = true
			return nil
		})
		return in, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Snapshot != name || read != e.snapshotID(siteVol.ID) || s.FS == nil {
		t.Fatalf("side reads snapshot %q (%v), want %q", s.Snapshot, read, name)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !closed || len(c.snaps) != 0 {
		t.Fatalf("after close: reader closed %v, snapshots left %v", closed, c.snaps)
	}
	if got := strings.Join(c.log, ", "); got != "create "+name+", delete "+name {
		t.Fatalf("calls: %s", got)
	}
}

func TestSourceSnapshotRemovedWhenOpeningFails(t *testing.T) {
	e, c := snapEnv()
	_, err := e.fromSnapshot(context.Background(), c, siteVol, func(*backend.Snapshot) (*Side, error) {
		return nil, errors.New("mount refused")
	})
	if err == nil || !strings.Contains(err.Error(), "mount refused") {
		t.Fatalf("open failure: %v", err)
	}
	if len(c.snaps) != 0 {
		t.Fatalf("a failed open left snapshots %v", c.snaps)
	}
}

func TestSourceSnapshotRefusedNamesTheWayOut(t *testing.T) {
	e, c := snapEnv()
	c.createErr = backend.Errorf(backend.Unavailable, "mgr down")
	_, err := e.fromSnapshot(context.Background(), c, siteVol, func(*backend.Snapshot) (*Side, error) {
		t.Fatal("opened without a snapshot")
		return nil, nil
	})
	if err == nil || !strings.Contains(err.Error(), "--snapshot=never") || backend.CodeOf(err) != backend.Unavailable {
		t.Fatalf("create failure: %v", err)
	}
}

// A run killed while reading its snapshot leaves it; the next run (same session) removes it
// and reads a fresh one, never the stale point in time.
func TestLeftoverSnapshotOfAKilledRunIsReplaced(t *testing.T) {
	e, c := snapEnv()
	if _, err := e.fromSnapshot(context.Background(), c, siteVol, func(*backend.Snapshot) (*Side, error) {
		return &Side{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Killed: no Close. The next run:
	c.log = nil
	s, err := e.fromSnapshot(context.Background(), c, siteVol, func(*backend.Snapshot) (*Side, error) { return &Side{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	name := e.SnapshotName(siteVol.ID)
	if got := strings.Join(c.log, ", "); got != "delete "+name+", create "+name {
		t.Fatalf("the rerun's calls: %s (want the leftover removed before a fresh snapshot)", got)
	}
	s.Close()
	// A live pass (--final, --snapshot=never) removes a leftover too.
	if _, err := e.fromSnapshot(context.Background(), c, siteVol, func(*backend.Snapshot) (*Side, error) { return &Side{}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.dropLeftoverSnapshot(context.Background(), c, siteVol.ID); err != nil || len(c.snaps) != 0 {
		t.Fatalf("live pass left %v (%v)", c.snaps, err)
	}
	// Another migration's snapshot of the same volume is not this run's to remove.
	other := &Env{Session: "shiphold-migrate-other"}
	if other.SnapshotName(siteVol.ID) == name {
		t.Fatal("two migrations share a snapshot name")
	}
}

// An RBD snapshot read through a clone answers Pending while the Ceph mgr purges that clone:
// the run waits for its snapshot to go, as a CO retries, instead of leaving it on the
// source (CI saw the snapshot left after a bulk pass on a busy cluster).
func TestSourceSnapshotRemovalWaitsOutPending(t *testing.T) {
	e, c := snapEnv()
	e.snapshotRetry = time.Millisecond
	c.pending = 3
	s, err := e.fromSnapshot(context.Background(), c, siteVol, func(*backend.Snapshot) (*Side, error) {
		return &Side{FS: memfs.New(LimitsOf(backend.KindRBD)), What: "snap"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if len(c.snaps) != 0 {
		t.Fatalf("the snapshot stayed on the source: %v (calls %v)", c.snaps, c.log)
	}
}
