package isilon

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Clones and restores copy data with OneFS's namespace copy: one synchronous call that
// takes as long as the data, which the array finishes even when the caller gives up. So
// a clone is made restartable and verifiable on the storage:
//
//  1. the copy goes into a temporary directory <tenant>/csi-tmp-<hash> that carries the
//     request record; a volume clone copies from a temporary snapshot of the source
//     (csi-clone-<tenant>-<hash>), so the source cannot change under the copy;
//  2. the copy runs in the background of the requests, which wait for it and answer
//     Pending (ABORTED) while it runs; a retry joins the running copy;
//  3. when the copy call returns, the copy is checked against its source (every path,
//     every file size) and only then recorded complete (SHIPHOLD_COPIED);
//  4. a complete copy is renamed into place: the volume directory only ever appears
//     whole. A retry after a controller restart finds the temporary directory without
//     the record, waits until nothing changes it any more (the old copy may still run on
//     the array), and copies again over it.

const (
	cloneTmpPrefix  = "csi-tmp-"
	cloneSnapPrefix = "csi-clone-"
)

// cloneDir is where a clone is copied before it is complete.
func cloneDir(z accessZone, id volid.Volume) string {
	return path.Join(z.isiPath, id.Tenant, cloneTmpPrefix+id.Hash)
}

// cloneSnapshotName is the temporary snapshot a volume clone copies from; snapshot names
// are global on the cluster, hence the tenant.
func cloneSnapshotName(id volid.Volume) string { return cloneSnapPrefix + id.Tenant + "-" + id.Hash }

// cloneJob is one background copy into a clone's temporary directory.
type cloneJob struct {
	tmp  string
	done chan struct{}
	err  error
}

// wait waits for the copy until ctx ends; nil means the copy is recorded complete.
func (j *cloneJob) wait(ctx context.Context) error {
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		return backend.Errorf(backend.Pending, "isilon: the clone's data is still being copied into %s; retry", j.tmp)
	}
}

func record(req *backend.VolumeRequest, size int64, source string) map[string]string {
	return map[string]string{attrRequest: escapeAttr(req.Name), attrSize: strconv.FormatInt(size, 10), attrSource: source,
		attrRecord: escapeAttr(backend.NewRequestRecord(req).Encode())}
}

// stageClone moves a clone one step on: it creates the temporary directory and starts the
// copy, joins or restarts a copy, or renames a complete copy into place. A returned job is
// to be waited for; without a job the volume directory exists.
func (c *Controller) stageClone(ctx context.Context, a array, req *backend.VolumeRequest, z accessZone, id volid.Volume, size int64, source string) (*cloneJob, error) {
	tmp := cloneDir(z, id)
	attrs, err := a.Attrs(ctx, tmp)
	switch {
	case backend.IsNotFound(err):
		from, srcSize, err := c.cloneSource(ctx, a, req, z, id)
		if err != nil {
			return nil, err
		}
		if size, err = fitSource(req, size, srcSize); err != nil {
			return nil, err
		}
		if err := a.Mkdir(ctx, tmp, volumeMode, record(req, size, source)); err != nil {
			return nil, err
		}
		return c.startCopy(from, tmp, req.Secrets, false), nil
	case err != nil:
		return nil, err
	}
	if _, err := checkRecord(req, tmp, attrs, size); err != nil {
		return nil, err
	}
	if attrs[attrCopied] == "true" {
		return nil, c.finishClone(ctx, a, z, id, tmp)
	}
	from, _, err := c.cloneSource(ctx, a, req, z, id)
	if err != nil {
		return nil, err
	}
	return c.startCopy(from, tmp, req.Secrets, true), nil
}

// fitSource grows size to the source's, within limit_bytes.
func fitSource(req *backend.VolumeRequest, size, srcSize int64) (int64, error) {
	if srcSize <= size {
		return size, nil
	}
	if req.LimitBytes > 0 && srcSize > req.LimitBytes {
		return 0, backend.Errorf(backend.OutOfRange, "isilon: the source holds %d bytes, over limit_bytes %d", srcSize, req.LimitBytes)
	}
	return srcSize, nil
}

// finishClone renames a complete copy into place and drops the temporary snapshot.
func (c *Controller) finishClone(ctx context.Context, a array, z accessZone, id volid.Volume, tmp string) error {
	dir := z.volumeDir(id)
	if err := a.Move(ctx, tmp, dir); err != nil {
		if _, lookErr := a.Attrs(ctx, dir); lookErr != nil { // not moved by a concurrent retry
			return err
		}
	}
	return c.dropCloneSnapshot(ctx, a, id)
}

func (c *Controller) dropCloneSnapshot(ctx context.Context, a array, id volid.Volume) error {
	s, err := a.Snapshot(ctx, cloneSnapshotName(id))
	if err != nil || s == nil {
		return err
	}
	if err := a.DeleteSnapshot(ctx, s.ID); err != nil && !backend.IsNotFound(err) {
		return err
	}
	return nil
}

// startCopy starts the background copy into tmp, or returns the one running. settle
// first waits until tmp stops changing: a copy from an earlier process may still run.
func (c *Controller) startCopy(from, tmp string, secrets map[string]string, settle bool) *cloneJob {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.jobs[tmp]; j != nil {
		return j
	}
	j := &cloneJob{tmp: tmp, done: make(chan struct{})}
	c.jobs[tmp] = j
	c.jobsRunning.Add(1)
	go func() {
		defer c.jobsRunning.Done()
		j.err = c.runCopy(from, tmp, secrets, settle)
		if j.err != nil {
			klog.Warningf("isilon backend %q: copy of %s into %s: %v", c.name, from, tmp, j.err)
		}
		c.mu.Lock()
		delete(c.jobs, tmp)
		c.mu.Unlock()
		close(j.done)
	}()
	return j
}

// runCopy copies, checks and records one clone. It takes no connection slot: a copy can
// last hours, and other requests go on meanwhile.
func (c *Controller) runCopy(from, tmp string, secrets map[string]string, settle bool) error {
	ctx, cancel := context.WithTimeout(c.jobCtx, c.conn.copyTimeout)
	defer cancel()
	a, _, err := c.conn.get(ctx, secrets)
	if err != nil {
		return err
	}
	if settle {
		if err := waitUnchanged(ctx, a, tmp, c.conn.copySettle); err != nil {
			return err
		}
	}
	if err := a.Copy(ctx, from, tmp); err != nil {
		return err
	}
	want, err := a.Tree(ctx, from)
	if err != nil {
		return err
	}
	got, err := a.Tree(ctx, tmp)
	if err != nil {
		return err
	}
	if diff := treeDiff(want, got); diff != "" {
		return backend.Errorf(backend.Unavailable, "isilon: the copy of %s into %s is incomplete (%s); the next retry copies again", from, tmp, diff)
	}
	return a.SetAttrs(ctx, tmp, map[string]string{attrCopied: "true"})
}

// waitUnchanged returns once two listings of dir, settle apart, are the same.
func waitUnchanged(ctx context.Context, a array, dir string, settle time.Duration) error {
	prev, err := a.Tree(ctx, dir)
	for err == nil {
		select {
		case <-ctx.Done():
			return backend.Errorf(backend.Unavailable, "isilon: %s kept changing (a copy from an earlier attempt still runs?): %v", dir, ctx.Err())
		case <-time.After(settle):
		}
		var cur map[string]int64
		if cur, err = a.Tree(ctx, dir); err == nil && treeDiff(prev, cur) == "" {
			return nil
		}
		prev = cur
	}
	return err
}

// treeDiff describes how got differs from want (directory sizes do not count); "" when
// they hold the same paths and file sizes.
func treeDiff(want, got map[string]int64) string {
	missing, differ := 0, 0
	example := ""
	for p, size := range want {
		g, ok := got[p]
		switch {
		case !ok:
			missing++
		case (size < 0) != (g < 0) || (size >= 0 && g != size):
			differ++
		default:
			continue
		}
		if example == "" {
			example = p
		}
	}
	extra := len(got) - (len(want) - missing)
	if missing+differ+extra == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d entries missing, %d differ, %d extra, e.g. %q", missing, len(want), differ, extra, example)
}

// cloneSource returns the directory to copy from and the source's size. A volume source
// is copied from a temporary snapshot of it, made on the first call.
func (c *Controller) cloneSource(ctx context.Context, a array, req *backend.VolumeRequest, z accessZone, id volid.Volume) (string, int64, error) {
	switch {
	case req.SourceSnapshot != nil:
		s, err := c.findSnapshot(ctx, a, *req.SourceSnapshot)
		if err != nil {
			return "", 0, err
		}
		srcDir := z.volumeDir(req.SourceSnapshot.Volume) // same zone: checkSameZone
		return a.SnapshotDir(s.Name, srcDir), c.snapshotSize(ctx, a, s, srcDir, nil), nil
	case req.SourceVolume != nil:
		srcDir := z.volumeDir(*req.SourceVolume)
		attrs, err := a.Attrs(ctx, srcDir)
		if err != nil {
			if backend.IsNotFound(err) {
				return "", 0, backend.Errorf(backend.NotFound, "isilon: source volume %s does not exist", req.SourceVolume)
			}
			return "", 0, err
		}
		size, _ := strconv.ParseInt(attrs[attrSize], 10, 64)
		name := cloneSnapshotName(id)
		s, err := a.Snapshot(ctx, name)
		if err == nil && s == nil {
			if s, err = a.CreateSnapshot(ctx, name, srcDir); err != nil {
				s, err = a.Snapshot(ctx, name) // a lost or concurrent create
			}
		}
		if err != nil {
			return "", 0, err
		}
		if s == nil || path.Clean(s.Path) != srcDir {
			return "", 0, backend.Errorf(backend.Unavailable, "isilon: temporary snapshot %s of %s is missing or of another directory; retry", name, srcDir)
		}
		return a.SnapshotDir(name, srcDir), size, nil
	}
	return "", 0, nil
}

// dropClone removes what an unfinished clone left: its temporary directory and snapshot.
func (c *Controller) dropClone(ctx context.Context, a array, z accessZone, id volid.Volume) error {
	tmp := cloneDir(z, id)
	c.mu.Lock()
	running := c.jobs[tmp] != nil
	c.mu.Unlock()
	if running {
		return backend.Errorf(backend.Pending, "isilon: a clone copy into %s is running; retry the delete when it ends", tmp)
	}
	if err := a.RemoveAll(ctx, tmp); err != nil && !backend.IsNotFound(err) {
		return err
	}
	return c.dropCloneSnapshot(ctx, a, id)
}
