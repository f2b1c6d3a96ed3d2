package cephfs

import (
	"fmt"
	"syscall"

	"github.com/shiphold/shiphold/pkg/backend"
)

// The request record is an extended attribute of the subvolume's base directory
// (/volumes/<group>/<subvolume>, which holds Ceph's .meta and the data directory, and which
// no node mounts): reading and writing it are MDS requests through the controller's
// libcephfs mount, so a create costs the single-threaded mgr volumes module one command.
// Volumes made by earlier versions keep theirs as subvolume metadata (recordKey), which
// is read when the attribute is absent.
const recordXattr = "user." + recordKey

// subvolumesDir is where the mgr volumes module keeps subvolume groups (its VolSpec
// default; Ceph 16.2 offers no other).
const subvolumesDir = "/volumes"

// baseDir is the subvolume's directory above its data directory.
// An adopted plain directory carries its record itself.
func (r volumeRef) baseDir() string {
	if r.dir != "" {
		return r.dir
	}
	return subvolumesDir + "/" + r.group + "/" + r.sub
}

// record reads a subvolume's request record: NotFound when there is no subvolume, found
// false when it has no record (a create that died before recording it), Pending for a
// clone still copying.
func (c *Controller) record(s *session, ref volumeRef) (rec volumeRecord, found bool, err error) {
	rec, found, err = c.recordOnDir(s, ref)
	if err != nil || found {
		return rec, found, err
	}
	// None on the directory: one of an earlier version, or a clone the mgr still copies
	// (which answers EAGAIN), or none.
	err = s.do("read subvolume "+ref.String(), func() (err error) {
		rec, found, err = getRecord(s.conn, ref.fs, ref.group, ref.sub)
		return err
	})
	return rec, found, err
}

// recordOnDir reads the record attribute of the subvolume's base directory.
func (c *Controller) recordOnDir(s *session, ref volumeRef) (volumeRecord, bool, error) {
	var raw []byte
	err := s.do("read the request record of subvolume "+ref.String(), func() (err error) {
		raw, err = s.conn.GetXattr(ref.fs, ref.baseDir(), recordXattr)
		return err
	})
	if isErrno(err, syscall.ENODATA) {
		return volumeRecord{}, false, nil
	}
	if err != nil {
		return volumeRecord{}, false, err
	}
	rec, err := decodeRecord(string(raw))
	if err != nil {
		return volumeRecord{}, false, backend.Errorf(backend.Internal, "subvolume %s: attribute %s of %s is not a shiphold record: %v", ref, recordXattr, ref.baseDir(), err)
	}
	return rec, true, nil
}

// writeRecord records the request on the subvolume.
func (c *Controller) writeRecord(s *session, ref volumeRef, rec volumeRecord) error {
	return s.do("record request on subvolume "+ref.String(), func() error {
		return s.conn.SetXattr(ref.fs, ref.baseDir(), recordXattr, []byte(rec.encode()))
	})
}

// subvolumePath is the data directory of a complete subvolume: the one directory in its
// base directory, found through the MDS; the mgr is asked only when that is not clear.
func (c *Controller) subvolumePath(s *session, ref volumeRef) (string, error) {
	var dirs []string
	if err := s.do("list subvolume directory "+ref.baseDir(), func() (err error) {
		dirs, err = s.conn.Subdirs(ref.fs, ref.baseDir())
		return err
	}); err != nil {
		return "", err
	}
	if len(dirs) == 1 {
		return ref.baseDir() + "/" + dirs[0], nil
	}
	var path string
	err := s.do("get path of subvolume "+ref.String(), func() (err error) {
		path, err = s.fsa.SubVolumePath(ref.fs, ref.group, ref.sub)
		return err
	})
	return path, err
}

// getRecord reads the request record of an earlier version, kept as subvolume metadata;
// ok is false when the subvolume has none.
func getRecord(conn commander, fs, group, sub string) (volumeRecord, bool, error) {
	kv, err := listMetadata(conn, fs, group, sub)
	if err != nil {
		return volumeRecord{}, false, err
	}
	v, ok := kv[recordKey]
	if !ok {
		return volumeRecord{}, false, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return volumeRecord{}, false, fmt.Errorf("subvolume %s/%s: metadata %s is not a shiphold record: %w", group, sub, recordKey, err)
	}
	return r, true, nil
}
