package rbd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/volid"
)

// feedController is a fake controller that keeps at most max purges in the mgr's queue,
// which holds its tasks until runTasks, and looks at it every few milliseconds.
func feedController(t *testing.T, f *fakeCluster, max int) *Controller {
	t.Helper()
	c := fakeControllerOn(f)
	c.purges.max, c.purges.every = max, 5*time.Millisecond
	t.Cleanup(c.Close)
	return c
}

// queuedPurges counts the trash purges in the fake mgr's queue.
func (f *fakeCluster) queuedPurges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.tasks {
		if t.Refs.Action == taskTrashRemove {
			n++
		}
	}
	return n
}

// runUntilPurged runs the mgr's queue until the trash of rbd/t1 is empty, and fails if
// the queue ever held more than max purges.
func runUntilPurged(t *testing.T, f *fakeCluster, max int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.trashed("rbd", "t1")) > 0 {
		if n := f.queuedPurges(); n > max {
			t.Fatalf("the mgr's queue holds %d purges, want at most %d", n, max)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d trash entries left after 10 s; %d purges queued in the mgr", len(f.trashed("rbd", "t1")), f.queuedPurges())
		}
		f.runTasks()
		time.Sleep(2 * time.Millisecond)
	}
}

// deleteWhileTheMgrHolds creates n volumes, then deletes them while the mgr holds its tasks.
func deleteWhileTheMgrHolds(t *testing.T, c *Controller, f *fakeCluster, n int) {
	t.Helper()
	var vols []volid.Volume
	for i := 0; i < n; i++ {
		vols = append(vols, mustCreate(t, c, volReq(fmt.Sprintf("pvc-%d", i), gib)).ID)
	}
	f.holdTasks = true
	for _, id := range vols {
		if err := c.DeleteVolume(context.Background(), id, nil); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
}

// The mgr's rbd_support module compares every `task add` with every queued task, under
// the lock its worker takes between tasks: a queue thousands deep made each delete wait
// up to 96 ms for its add and slowed the purges to a third (make bench-scale). A burst of
// deletes keeps at most max purges in that queue; the others wait in the controller, which
// queues them as the mgr works through its queue, and every image is purged.
func TestDeletesKeepTheMgrPurgeQueueShort(t *testing.T) {
	f := newFakeCluster()
	c := feedController(t, f, 3)
	ctx := context.Background()
	deleteWhileTheMgrHolds(t, c, f, 8)
	if n, left := f.queuedPurges(), len(f.trashed("rbd", "t1")); n != 3 || left != 8 {
		t.Fatalf("after 8 deletes: %d purges queued in the mgr, %d trash entries; want 3 queued of 8", n, left)
	}
	leftovers, err := c.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, l := range leftovers {
		states[l.State]++
	}
	if states["purge queued"] != 3 || states[purgeWaiting] != 5 {
		t.Errorf("leftovers by state %v, want 3 %q and 5 %q", states, "purge queued", purgeWaiting)
	}
	runUntilPurged(t, f, 3)
}

// A controller that stops with purges waiting leaves trash entries without a task; its
// successor's sweep queues them as the deletes did, at most max at a time, and every one
// is purged.
func TestTheSweepFeedsPurgesLeftWaiting(t *testing.T) {
	f := newFakeCluster()
	c := feedController(t, f, 2)
	ctx := context.Background()
	deleteWhileTheMgrHolds(t, c, f, 6)
	c.Close()
	if n := f.queuedPurges(); n != 2 {
		t.Fatalf("%d purges queued, want 2", n)
	}
	f.runTasks() // the mgr purges what was queued; four entries have none
	if left := len(f.trashed("rbd", "t1")); left != 4 {
		t.Fatalf("%d trash entries left, want 4", left)
	}
	next := feedController(t, f, 2)
	left, err := next.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.queuedPurges(); n != 2 || len(left) != 4 {
		t.Fatalf("the sweep queued %d purges and listed %d entries, want 2 of 4", n, len(left))
	}
	for _, l := range left {
		if l.State != "purge queued" && l.State != purgeWaiting {
			t.Errorf("leftover %s: state %q", l.Name, l.State)
		}
	}
	runUntilPurged(t, f, 2)
	if !strings.Contains(purgeWaiting, "controller") {
		t.Errorf("state %q does not say where the purge waits", purgeWaiting)
	}
}
