package rbd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

// Long work (flattening a clone, removing an image's data) runs in the Ceph mgr's
// rbd_support task queue, not in a request: the queue lives in RADOS (an rbd_task object
// per namespace), so a task survives the controller and the mgr restarts it after a
// failover; a request only queues it and answers Pending until the image shows it done.
// The mgr answers a repeated request for the same task with the task already queued.

const (
	taskFlatten     = "flatten"
	taskTrashRemove = "trash remove"
)

// mgrTask is the part of an rbd_support task this controller reads.
type mgrTask struct {
	ID           string  `json:"id"`
	InProgress   bool    `json:"in_progress"`
	Progress     float64 `json:"progress"`
	RetryMessage string  `json:"retry_message"`
	// RetryAttempts counts the task's runs: the mgr counts a successful one too.
	RetryAttempts int `json:"retry_attempts"`
	Refs          struct {
		Action    string `json:"action"`
		Pool      string `json:"pool_name"`
		Namespace string `json:"pool_namespace"`
		ImageName string `json:"image_name"`
		ImageID   string `json:"image_id"`
	} `json:"refs"`
}

// state says where a task is, for Pending messages and the leftovers listing.
func (t *mgrTask) state() string {
	switch {
	case t.RetryMessage != "":
		return "retrying after: " + t.RetryMessage
	case t.InProgress:
		return fmt.Sprintf("running, %.0f%% done", 100*t.Progress)
	}
	return "queued"
}

// queueTask adds an rbd_support task: flatten pool/ns/image, or trash remove pool/ns/id.
// NotFound means there is nothing to do (no such image, no parent, no trash entry).
func queueTask(conn cluster, action, spec string) (*mgrTask, error) {
	arg := "image_spec"
	if action == taskTrashRemove {
		arg = "image_id_spec"
	}
	cmd, err := json.Marshal(map[string]string{"prefix": "rbd task add " + action, arg: spec, "format": "json"})
	if err != nil {
		return nil, err
	}
	out, status, err := conn.MgrCommand([][]byte{cmd})
	if err != nil {
		return nil, taskError(err, status, fmt.Sprintf("queue %s of %s in the Ceph mgr", action, spec))
	}
	var t mgrTask
	if err := json.Unmarshal(out, &t); err != nil {
		return nil, backend.Errorf(backend.Internal, "queue %s of %s: unexpected mgr answer %q", action, spec, out)
	}
	return &t, nil
}

// cancelTask removes a task from the mgr's queue.
func cancelTask(conn cluster, id string) error {
	cmd, err := json.Marshal(map[string]string{"prefix": "rbd task cancel", "task_id": id})
	if err != nil {
		return err
	}
	_, status, err := conn.MgrCommand([][]byte{cmd})
	if err != nil {
		return taskError(err, status, "cancel rbd task "+id)
	}
	return nil
}

// listTasks returns the mgr's task queue (every pool and namespace the user may see).
func listTasks(conn cluster) ([]mgrTask, error) {
	out, status, err := conn.MgrCommand([][]byte{[]byte(`{"prefix":"rbd task list","format":"json"}`)})
	if err != nil {
		return nil, taskError(err, status, "list the Ceph mgr's rbd tasks")
	}
	var tasks []mgrTask
	if err := json.Unmarshal(out, &tasks); err != nil {
		return nil, backend.Errorf(backend.Internal, "rbd task list: unexpected mgr answer %q", out)
	}
	return tasks, nil
}

// taskError classifies a failed rbd_support command by the shared errno rules; its status
// text says why. Only the mgr's text tells a missing task queue from a bad argument.
func taskError(err error, status, what string) error {
	why := strings.TrimSpace(status)
	noQueue := strings.Contains(why, "not valid") || strings.Contains(why, "unrecognized") || strings.Contains(why, "No handler")
	if ceph.Errno(err) == syscall.EINVAL && noQueue {
		return backend.Errorf(backend.Unimplemented, "%s: the Ceph mgr has no rbd_support task queue (Ceph 14.2 or newer with the rbd_support module): %s", what, why)
	}
	return ceph.Classify(fmt.Errorf("%w: %s", err, why), what, taskHints)
}

// defaultTaskWait is how long a request waits for the mgr to finish work it queued before
// it answers Pending: small clones (an empty or thin volume) are done by then, and the
// caller, csi-sanity among them, gets its answer in one call.
const defaultTaskWait = 4 * time.Second

// SetTaskWait sets how long requests wait for the mgr's work before they answer Pending;
// 0 answers Pending at once (tests that show the Pending path use it).
func (c *Controller) SetTaskWait(d time.Duration) { c.taskWait = d }

// awaitTask polls done until it reports true, for at most wait and never past the
// request's deadline (less a second to answer); false when the work is still going on.
func awaitTask(ctx context.Context, wait time.Duration, done func() bool) bool {
	until := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Add(-time.Second).Before(until) {
		until = d.Add(-time.Second)
	}
	for {
		if done() {
			return true
		}
		if time.Now().Add(250 * time.Millisecond).After(until) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// taskHints: the task queue is the mgr's, so it is mgr caps that are missing.
var taskHints = ceph.Hints{Caps: `mgr caps "profile rbd" on the pool`}

// late refuses to start a change once the request's deadline has passed: ceph.Do has
// answered the CO already, which retries, and a change made now by the abandoned call
// (a snapshot re-created after its delete) would land behind the retry's back.
func late(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return backend.Errorf(backend.Unavailable, "request deadline passed before %s; retry (%w)", what, err)
	}
	return nil
}
