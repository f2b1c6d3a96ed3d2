package rbd

import (
	"context"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
)

// The mgr's rbd_support module answers each `rbd task add` by comparing it with every task
// in its queue (a duplicate is answered with the queued task), under the lock its one
// worker thread takes between tasks. Measured on the local cluster during 10,000 deletes
// (make bench-scale): an add took 4 ms with the queue empty and 96 ms with about 5,000
// purges queued, and the purges themselves fell from 705 to 266 a minute. So a controller
// keeps at most maxQueuedPurges purges in that queue. A delete whose image has moved to
// the trash is done; when the queue is full its purge waits in the controller, and a
// feeder queues the waiting purges, oldest first, as the mgr works through its queue. A
// controller that stops with purges waiting leaves trash entries without a task: its
// successor's sweep (Collect) hands them to its own feeder.

// maxQueuedPurges bounds the trash purges in the mgr's queue (everyone's: its length is
// what each add pays for) before this controller's wait in it.
const maxQueuedPurges = 64

// purgeFeedInterval is how often the feeder reads the mgr's queue while purges wait.
const purgeFeedInterval = time.Second

// purgeWaiting is the state Leftovers reports for a trash entry whose purge waits in the
// controller.
const purgeWaiting = "purge waiting in the controller for room in the mgr's queue"

// purgeFeed holds the purges waiting for room in the mgr's queue.
type purgeFeed struct {
	max   int           // 0: never wait (the feeder has no credentials of its own to queue with)
	every time.Duration // how often the feeder reads the queue

	mu      sync.Mutex
	queued  int      // the purges in the mgr's queue, as last read plus those queued since
	waiting []string // task specs (pool/ns/id), oldest first
	held    map[string]bool
	running bool
	// ctx ends with close, which then waits for the feeder (done): a read of the queue
	// under way is abandoned, not waited for.
	ctx    context.Context
	stop   context.CancelFunc
	done   sync.WaitGroup
	closed bool
}

func newPurgeFeed(limit int) *purgeFeed {
	ctx, stop := context.WithCancel(context.Background())
	return &purgeFeed{max: limit, every: purgeFeedInterval, held: map[string]bool{}, ctx: ctx, stop: stop}
}

// hold answers true when spec's purge is to wait in the controller (the queue is full, or
// others wait before it; it is then held, once); false when the caller queues it now, which
// it is counted as.
func (p *purgeFeed) hold(spec string, feed func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[spec] {
		return true
	}
	if p.max == 0 || p.closed || len(p.waiting) == 0 && p.queued < p.max {
		p.queued++
		return false
	}
	p.waiting = append(p.waiting, spec)
	p.held[spec] = true
	if !p.running {
		p.running = true
		p.done.Add(1)
		go feed()
	}
	return true
}

// waitingCount is how many purges wait in the controller.
func (p *purgeFeed) waitingCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiting)
}

// isHeld says whether spec's purge waits in the controller.
func (p *purgeFeed) isHeld(spec string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[spec]
}

// take records that the mgr's queue holds queued purges and hands out the waiting ones
// that fit beside them, oldest first.
func (p *purgeFeed) take(queued int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queued = queued
	n := min(max(p.max-queued, 0), len(p.waiting))
	batch := append([]string(nil), p.waiting[:n]...)
	p.waiting = p.waiting[n:]
	for _, s := range batch {
		delete(p.held, s)
	}
	p.queued += n
	return batch
}

// giveBack puts purges the feeder could not queue back at the head of the line.
func (p *purgeFeed) giveBack(specs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range specs {
		p.held[s] = true
	}
	p.waiting = append(append([]string(nil), specs...), p.waiting...)
	p.queued -= len(specs)
}

// idle ends the feeder once nothing waits; false while purges wait.
func (p *purgeFeed) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiting) > 0 && !p.closed {
		return false
	}
	p.running = false
	return true
}

// close stops the feeder; the purges still waiting are the next controller's sweep's.
func (p *purgeFeed) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.stop()
	}
	p.mu.Unlock()
	p.done.Wait()
}

// queuePurge queues the mgr's purge of trash entry spec and answers its task, or holds it
// in the controller while the mgr's queue is full and answers none.
func (c *Controller) queuePurge(conn cluster, spec string) (*mgrTask, error) {
	if c.purges.hold(spec, c.feedPurges) {
		return nil, nil
	}
	return queueTask(conn, taskTrashRemove, spec)
}

// feedPurges queues the waiting purges as the mgr's queue makes room for them, reading it
// every purges.every, until none waits or the controller closes. It queues with the
// backend's configured credentials, as the sweep does.
func (c *Controller) feedPurges() {
	p := c.purges
	defer p.done.Done()
	var logged time.Time
	for {
		select {
		case <-p.ctx.Done():
			p.idle()
			return
		case <-time.After(p.every):
		}
		ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
		err := c.storage.Do(ctx, nil, func(conn connection) error {
			tasks, err := listTasks(conn)
			if err != nil {
				return err
			}
			queued := 0
			for _, t := range tasks {
				if t.Refs.Action == taskTrashRemove {
					queued++
				}
			}
			batch := p.take(queued)
			for i, spec := range batch {
				if _, err := queueTask(conn, taskTrashRemove, spec); err != nil && !backend.IsNotFound(err) {
					p.giveBack(batch[i:])
					return err
				}
			}
			return nil
		})
		cancel()
		if err != nil && time.Since(logged) > time.Minute {
			// Once a minute: the feeder retries every p.every through an outage.
			logged = time.Now()
			klog.ErrorS(err, "queue waiting RBD trash purges in the Ceph mgr; retrying", "backend", c.name, "waiting", p.waitingCount())
		}
		if p.idle() {
			return
		}
	}
}
