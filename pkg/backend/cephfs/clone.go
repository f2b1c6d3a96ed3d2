package cephfs

import (
	"fmt"
	"time"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// defaultCloneWait bounds how long CreateVolume waits for a clone when the request has no
// deadline; after it the caller gets Pending and retries.
const defaultCloneWait = 30 * time.Second

// cloneSource is the snapshot a new volume is cloned from.
type cloneSource struct {
	// id is the CSI ID of the source (snapshot or volume), recorded on the clone.
	id string
	// ref is the source subvolume; snap the snapshot cloned.
	ref  volumeRef
	snap string
	// temporary is set when snap was made for this clone from a source volume.
	temporary bool
}

// cloneSource resolves the request's content source; nil when there is none.
func (c *Controller) cloneSource(s *session, req *backend.VolumeRequest, loc string) (*cloneSource, error) {
	var src volid.Volume
	var what string
	switch {
	case req.SourceSnapshot != nil:
		src, what = req.SourceSnapshot.Volume, "snapshot "+req.SourceSnapshot.String()
	case req.SourceVolume != nil:
		src, what = *req.SourceVolume, "volume "+req.SourceVolume.String()
	default:
		return nil, nil
	}
	if isDirObject(src.Object) {
		return nil, backend.Errorf(backend.FailedPrecondition, "source %s is an adopted plain CephFS directory: the Ceph mgr clones only subvolumes (copy its data into a new volume instead)", what)
	}
	if src.Location != loc {
		// A filesystem that is gone holds no source: that is NOT_FOUND, not a wrong request.
		if _, err := c.fsName(s, src.Location); err != nil {
			return nil, backend.Errorf(backend.CodeOf(err), "source %s does not exist: %v", what, err)
		}
		return nil, backend.Errorf(backend.InvalidArgument, "source %s is on CephFS filesystem id %s, the volume is requested on id %s; clones stay on their filesystem (check StorageClass parameter %q)", what, src.Location, loc, ParamFSName)
	}
	ref, err := c.ref(s, src)
	if err != nil {
		return nil, backend.Errorf(backend.NotFound, "source %s does not exist: %v", what, err)
	}
	if req.SourceSnapshot != nil {
		return &cloneSource{id: req.SourceSnapshot.String(), ref: ref, snap: snapshotName(req.SourceSnapshot.SnapHash)}, nil
	}
	return &cloneSource{id: req.SourceVolume.String(), ref: ref, snap: cloneSnapName(volid.Hash(req.Name)), temporary: true}, nil
}

// startClone checks the source, makes the temporary snapshot of a source volume, starts
// the clone and waits for it as long as the request allows.
func (c *Controller) startClone(s *session, req *backend.VolumeRequest, p volumeParams, id volid.Volume, ref volumeRef, src *cloneSource) (*backend.Volume, error) {
	if src.temporary {
		if _, err := c.info(s, src.ref); err != nil {
			if backend.IsNotFound(err) {
				return nil, backend.Errorf(backend.NotFound, "source volume %s does not exist", src.id)
			}
			return nil, err
		}
		// Creating an existing snapshot succeeds, so a retry reuses it.
		if err := s.do("snapshot source volume "+src.ref.String()+" for a clone", func() error {
			return s.fsa.CreateSubVolumeSnapshot(src.ref.fs, src.ref.group, src.ref.sub, src.snap)
		}); err != nil {
			return nil, err
		}
	} else if err := s.do("get source snapshot "+src.ref.String()+"@"+src.snap, func() error {
		_, err := s.fsa.SubVolumeSnapshotInfo(src.ref.fs, src.ref.group, src.ref.sub, src.snap)
		return err
	}); err != nil {
		if backend.IsNotFound(err) {
			return nil, backend.Errorf(backend.NotFound, "source snapshot %s does not exist", src.id)
		}
		return nil, err
	}
	err := s.do("clone "+src.ref.String()+"@"+src.snap+" to "+ref.String(), func() error {
		return cloneSubvolumeSnapshot(s.conn, src.ref.fs, src.ref.group, src.ref.sub, src.snap, ref.group, ref.sub)
	})
	if err != nil && backend.CodeOf(err) != backend.AlreadyExists {
		return nil, err
	}
	return c.finishClone(s, req, p, id, ref, src)
}

// finishClone waits for a clone until shortly before the request deadline. A finished clone
// gets its requested size and record and loses its temporary snapshot; one still copying
// is Pending, so the CO retries and the retry lands here again.
func (c *Controller) finishClone(s *session, req *backend.VolumeRequest, p volumeParams, id volid.Volume, ref volumeRef, src *cloneSource) (vol *backend.Volume, err error) {
	waited := backend.LongWait(s.ctx, "clone", "subvolume", ref.String(), "source", src.id)
	defer func() { waited(err) }()
	deadline := time.Now().Add(defaultCloneWait)
	if d, ok := s.ctx.Deadline(); ok {
		margin := time.Until(d) / 5
		if margin > 2*time.Second {
			margin = 2 * time.Second
		}
		deadline = d.Add(-margin)
	}
	for {
		var st *admin.CloneStatus
		err := s.do("get clone status of "+ref.String(), func() (err error) {
			st, err = s.fsa.CloneStatus(ref.fs, ref.group, ref.sub)
			return err
		})
		switch {
		case err != nil && notCloneErr(err):
			return nil, backend.Errorf(backend.AlreadyExists, "volume %q already exists as %s but is not a clone of %s", req.Name, ref, src.id)
		case err != nil:
			return nil, err
		}
		switch st.State {
		case admin.CloneComplete:
			return c.completeClone(s, req, p, id, ref, src)
		case admin.CloneFailed, admin.CloneState("canceled"):
			return nil, c.dropFailedClone(s, ref, src, st)
		}
		if time.Now().Add(c.clonePoll).After(deadline) {
			return nil, backend.Errorf(backend.Pending, "clone in progress, retry: %s from %s is %s%s", ref, src.id, st.State, progress(st))
		}
		select {
		case <-s.ctx.Done():
			return nil, backend.Errorf(backend.Pending, "clone in progress, retry: %s from %s is %s", ref, src.id, st.State)
		case <-time.After(c.clonePoll):
		}
	}
}

func progress(st *admin.CloneStatus) string {
	if st.ProgressReport.PercentageCloned == "" {
		return ""
	}
	return fmt.Sprintf(" (%s copied)", st.ProgressReport.PercentageCloned)
}

func (c *Controller) completeClone(s *session, req *backend.VolumeRequest, p volumeParams, id volid.Volume, ref volumeRef, src *cloneSource) (*backend.Volume, error) {
	// A clone carries its source's quota; give it the requested size.
	if err := s.do("size clone "+ref.String(), func() error {
		return resizeSubvolume(s.conn, ref.fs, ref.group, ref.sub, req.RequiredBytes, false)
	}); err != nil {
		return nil, err
	}
	if src.temporary {
		if err := s.do("delete temporary clone snapshot "+src.ref.String()+"@"+src.snap, func() error {
			return s.fsa.RemoveSubVolumeSnapshot(src.ref.fs, src.ref.group, src.ref.sub, src.snap)
		}); err != nil && !backend.IsNotFound(err) {
			return nil, err
		}
	}
	return c.recordNew(s, req, p, id, ref, src.id)
}

// dropFailedClone removes a failed clone, and the temporary snapshot of a source volume it
// was copied from, so that a retry starts afresh and nothing is left if none comes. The
// snapshot goes first: a controller killed in between finds the failed clone again.
func (c *Controller) dropFailedClone(s *session, ref volumeRef, src *cloneSource, st *admin.CloneStatus) error {
	why := string(st.State)
	if f := st.GetFailure(); f != nil {
		why = fmt.Sprintf("%s: %s (errno %s)", st.State, f.ErrStr, f.Errno)
	}
	if src.temporary {
		if err := s.do("delete temporary clone snapshot "+src.ref.String()+"@"+src.snap, func() error {
			return s.fsa.ForceRemoveSubVolumeSnapshot(src.ref.fs, src.ref.group, src.ref.sub, src.snap)
		}); err != nil && !backend.IsNotFound(err) {
			return backend.Errorf(backend.Internal, "clone %s %s, and removing its temporary snapshot failed: %v", ref, why, err)
		}
	}
	if err := s.do("delete failed clone "+ref.String(), func() error {
		return s.fsa.RemoveSubVolumeWithFlags(ref.fs, ref.group, ref.sub, admin.SubVolRmFlags{Force: true})
	}); err != nil && !backend.IsNotFound(err) {
		return backend.Errorf(backend.Internal, "clone %s %s, and removing it failed: %v", ref, why, err)
	}
	return backend.Errorf(backend.Internal, "clone %s %s; it was removed, a retry starts a new clone", ref, why)
}

// dropCloneSnapshots removes the temporary clone snapshots on a volume about to be deleted
// whose clone is finished or gone; without this, Ceph keeps the volume for ever in state
// snapshot-retained. A clone still copying keeps its snapshot (and Ceph refuses the delete).
func (c *Controller) dropCloneSnapshots(s *session, ref volumeRef) error {
	var snaps []string
	if err := s.do("list snapshots of "+ref.String(), func() (err error) {
		snaps, err = s.fsa.ListSubVolumeSnapshots(ref.fs, ref.group, ref.sub)
		return err
	}); err != nil {
		return err
	}
	for _, sn := range snaps {
		h, ok := hashOf(cloneSnapPrefix, sn)
		if !ok {
			continue
		}
		clone := volumeRef{fs: ref.fs, group: ref.group, sub: subvolumeName(h)}
		if _, err := c.info(s, clone); backend.CodeOf(err) == backend.Pending {
			continue
		}
		if err := s.do("delete temporary clone snapshot "+ref.String()+"@"+sn, func() error {
			return s.fsa.ForceRemoveSubVolumeSnapshot(ref.fs, ref.group, ref.sub, sn)
		}); err != nil && !backend.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// dropOwnCloneSnapshot removes the temporary snapshot an unrecorded clone (its controller
// died before recording it) was copied from. Ceph names the source only while the clone
// runs; after that the source is the tenant's subvolume that has the snapshot.
func (c *Controller) dropOwnCloneSnapshot(s *session, ref volumeRef, id volid.Volume) error {
	var st *admin.CloneStatus
	if err := s.do("get clone status of "+ref.String(), func() (err error) {
		st, err = s.fsa.CloneStatus(ref.fs, ref.group, ref.sub)
		return err
	}); err != nil {
		if backend.IsNotFound(err) || notCloneErr(err) {
			return nil
		}
		return err
	}
	snap := cloneSnapName(id.Hash)
	var sources []volumeRef
	if st.Source.SubVolume != "" {
		if st.Source.Snapshot != snap {
			return nil
		}
		sources = []volumeRef{{fs: st.Source.Volume, group: st.Source.Group, sub: st.Source.SubVolume}}
	} else if err := s.do("list subvolumes of "+ref.fs+":"+ref.group, func() error {
		subs, err := s.fsa.ListSubVolumes(ref.fs, ref.group)
		for _, sub := range subs {
			sources = append(sources, volumeRef{fs: ref.fs, group: ref.group, sub: sub})
		}
		return err
	}); err != nil {
		return err
	}
	for _, src := range sources {
		err := s.do("delete temporary clone snapshot "+src.String()+"@"+snap, func() error {
			return s.fsa.ForceRemoveSubVolumeSnapshot(src.fs, src.group, src.sub, snap)
		})
		if err != nil && !backend.IsNotFound(err) {
			return err
		}
	}
	return nil
}
