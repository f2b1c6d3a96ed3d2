package cephfs

import (
	"context"
	"encoding/json"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// A plain directory of a CephFS filesystem (a legacy site's data, not a mgr subvolume) is
// adopted in place: its ID's object is its absolute path ("a1:<backend>:<tenant>:<fscid>:
// /legacy/site1"; a subvolume's object is "<group>/<subvolume>", with no leading '/'),
// shiphold's request record is an attribute of the directory itself, its size is the
// directory quota (ceph.quota.max_bytes), and an entry in the backend's index directory
// lets ListVolumes, the tenant quotas and gc find it. Every call is an MDS request through
// the controller's libcephfs mount; the mgr, which knows only subvolumes, is not asked.
//
// The data is never removed: DeleteVolume releases the directory (record, index entry and
// publish records go, the quota it had before adoption comes back) and leaves its files
// where they are. Snapshots are refused: shiphold snapshots and clones through the mgr,
// which cannot snapshot or clone a plain directory.

const (
	// quotaXattr and rbytesXattr are CephFS's directory quota and recursive size.
	quotaXattr  = "ceph.quota.max_bytes"
	rbytesXattr = "ceph.dir.rbytes"
	// quotaBeforeXattr keeps the quota a directory had before its adoption ("0": none),
	// which its release puts back.
	quotaBeforeXattr = "user.shiphold.quota-before"
	// publishedXattr holds the publish records of an adopted directory (a JSON object of
	// backend.PublishRecordKey to mode), a subvolume's being mgr metadata.
	publishedXattr = "user.shiphold.published"
	// adoptedIndexRoot holds one index directory per backend; each entry is named by the
	// adopted directory's path without its leading '/' and with ':' for '/' (a path an
	// ID can carry has no ':'), so that a mkdir makes it and a listing reads them all.
	adoptedIndexRoot = "/.shiphold"
)

// isDirObject says whether an adopted volume's object is a plain directory's path.
func isDirObject(object string) bool { return strings.HasPrefix(object, "/") }

func (c *Controller) adoptedIndex() string { return adoptedIndexRoot + "/" + c.name + "/adopted" }

func indexEntry(dir string) string { return strings.ReplaceAll(strings.TrimPrefix(dir, "/"), "/", ":") }

func entryDir(entry string) string { return "/" + strings.ReplaceAll(entry, ":", "/") }

// parseDirObject splits "<fs>:<absolute path>" and refuses what must not be adopted: the
// root, the mgr's /volumes tree (a subvolume is adopted as <fs>/<group>/<subvolume>), and
// shiphold's own index.
func parseDirObject(object string) (fs, dir string, err error) {
	fs, dir, _ = strings.Cut(object, ":")
	switch {
	case fs == "" || !strings.HasPrefix(dir, "/") || path.Clean(dir) != dir:
		return "", "", backend.Errorf(backend.InvalidArgument, "cephfs: %q is not <fs>:<clean absolute path> of a directory", object)
	case dir == "/":
		return "", "", backend.Errorf(backend.InvalidArgument, "cephfs: %s is the root of filesystem %s; adopt the directory that holds the data, not the whole filesystem", dir, fs)
	case dir == subvolumesDir || strings.HasPrefix(dir, subvolumesDir+"/"):
		return "", "", backend.Errorf(backend.InvalidArgument, "cephfs: %s is in the mgr volumes module's tree %s; adopt a subvolume as <fs>/<group>/<subvolume> (shipholdctl import %s/GROUP/SUBVOLUME)", dir, subvolumesDir, fs)
	case dir == adoptedIndexRoot || strings.HasPrefix(dir, adoptedIndexRoot+"/"):
		return "", "", backend.Errorf(backend.InvalidArgument, "cephfs: %s is shiphold's own index; it holds no data to adopt", dir)
	}
	return fs, dir, nil
}

// adoptDir takes the plain directory "<fs>:<path>" under management for the tenant: its
// quota is kept, or set to the size asked; a directory holding more data than that is
// refused. Adopting it again for the same request is idempotent.
func (c *Controller) adoptDir(ctx context.Context, req *backend.AdoptRequest) (*backend.Volume, error) {
	fs, dir, err := parseDirObject(req.Object)
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	for k, v := range req.Parameters {
		params[k] = v
	}
	params[ParamFSName] = fs
	p, err := parseParams(params, c.cfg)
	if err != nil {
		return nil, err
	}
	s, err := c.session(ctx, req.Secrets)
	if err != nil {
		return nil, err
	}
	loc, err := c.fsID(s, fs)
	if err != nil {
		return nil, err
	}
	id, err := volid.Adopted(c.name, req.Tenant, loc, dir)
	if err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "cephfs: cannot adopt %s: %v (its volume ID carries the path: rename the directory, or adopt a parent whose path fits)", req.Object, err)
	}
	ref := volumeRef{fs: fs, dir: dir}
	used, err := c.dirBytes(s, ref, rbytesXattr)
	if err != nil {
		return nil, err
	}
	rec, found, err := c.recordOnDir(s, ref)
	if err != nil {
		return nil, err
	}
	if err := c.checkAdoptable(req, rec, found); err != nil {
		return nil, err
	}
	if err := c.refuseNested(s, ref, req); err != nil {
		return nil, err
	}
	quota, err := c.dirBytes(s, ref, quotaXattr)
	if err != nil {
		return nil, err
	}
	size := max(req.SizeBytes, quota)
	switch {
	case size == 0:
		return nil, backend.Errorf(backend.InvalidArgument, "cephfs: directory %s has no quota; give the size to adopt it with (--size, at least the %d bytes it holds)", req.Object, used)
	case used > size:
		return nil, backend.Errorf(backend.FailedPrecondition, "cephfs: directory %s holds %d bytes, more than the %d bytes asked; adopt it with a larger size (--size)", req.Object, used, size)
	}
	// The index entry first: a directory with a record is never missing from the lists.
	if err := s.do("index adopted directory "+ref.String(), func() error {
		return s.conn.MakeDirs(fs, c.adoptedIndex()+"/"+indexEntry(dir))
	}); err != nil {
		return nil, err
	}
	if !found {
		// An attempt that died before recording kept it already, and may have set the
		// quota since: that one is not what the directory had.
		_, kept, err := c.dirXattr(s, ref, quotaBeforeXattr)
		if err != nil {
			return nil, err
		}
		if !kept {
			if err := c.setDirXattr(s, ref, quotaBeforeXattr, strconv.FormatInt(quota, 10)); err != nil {
				return nil, err
			}
		}
	}
	if size != quota {
		if err := c.setDirXattr(s, ref, quotaXattr, strconv.FormatInt(size, 10)); err != nil {
			return nil, err
		}
	}
	vr := &backend.VolumeRequest{Name: req.Name, Tenant: req.Tenant, RequiredBytes: size, Parameters: params}
	rr := backend.NewRequestRecord(vr)
	rec = volumeRecord{Name: req.Name, Bytes: size, Params: p, Request: &rr, Backend: c.name}
	if err := c.writeRecord(s, ref, rec); err != nil {
		return nil, err
	}
	return c.dirVolume(id, ref, rec, size), nil
}

// checkAdoptable refuses an object recorded for another backend or another request.
func (c *Controller) checkAdoptable(req *backend.AdoptRequest, rec volumeRecord, found bool) error {
	if found && rec.Backend != "" && rec.Backend != c.name {
		return backend.Errorf(backend.AlreadyExists, "cephfs: %s is already managed by shiphold backend %q; it cannot be adopted by backend %q too", req.Object, rec.Backend, c.name)
	}
	if r := rec.request(); found && (r.Name != req.Name || r.Tenant != req.Tenant) {
		return backend.Errorf(backend.AlreadyExists, "cephfs: %s is already managed by shiphold as %q of tenant %q; it cannot be adopted as %q of tenant %q", req.Object, r.Name, r.Tenant, req.Name, req.Tenant)
	}
	return nil
}

// refuseNested refuses a directory inside or around one already adopted: their quotas and
// tenants would overlap. Parents are asked for a record, children found in the index.
func (c *Controller) refuseNested(s *session, ref volumeRef, req *backend.AdoptRequest) error {
	for d := path.Dir(ref.dir); d != "/"; d = path.Dir(d) {
		rec, found, err := c.recordOnDir(s, volumeRef{fs: ref.fs, dir: d})
		if err != nil {
			return err
		}
		if found && rec.Request != nil {
			return backend.Errorf(backend.AlreadyExists, "cephfs: %s is inside directory %s, which shiphold manages as %q of tenant %q; adopt directories that do not overlap", req.Object, d, rec.Request.Name, rec.Request.Tenant)
		}
	}
	entries, err := c.dirsOf(s, ref.fs, c.adoptedIndex())
	if err != nil {
		return err
	}
	for _, e := range entries {
		if d := entryDir(e); strings.HasPrefix(d, ref.dir+"/") {
			if _, found, err := c.recordOnDir(s, volumeRef{fs: ref.fs, dir: d}); err == nil && found {
				return backend.Errorf(backend.AlreadyExists, "cephfs: %s holds directory %s, which shiphold manages already; adopt directories that do not overlap", req.Object, d)
			}
		}
	}
	return nil
}

// dirBytes reads a byte count attribute of the directory: 0 when it is not set (a
// directory without quota), NotFound when there is no such directory.
func (c *Controller) dirBytes(s *session, ref volumeRef, name string) (int64, error) {
	raw, set, err := c.dirXattr(s, ref, name)
	switch {
	case err != nil:
		return 0, err
	case !set && name == rbytesXattr:
		return 0, backend.Errorf(backend.InvalidArgument, "cephfs: %s is not a directory", ref)
	case !set:
		return 0, nil
	}
	n, perr := strconv.ParseInt(strings.TrimRight(string(raw), "\x00"), 10, 64)
	if perr != nil {
		return 0, backend.Errorf(backend.Internal, "cephfs: attribute %s of %s is %q, not a byte count", name, ref, raw)
	}
	return n, nil
}

// dirXattr reads an attribute of the directory; set is false when it has none, NotFound
// when there is no such directory.
func (c *Controller) dirXattr(s *session, ref volumeRef, name string) (raw []byte, set bool, err error) {
	err = s.do("read "+name+" of directory "+ref.String(), func() (err error) {
		raw, err = s.conn.GetXattr(ref.fs, ref.dir, name)
		return err
	})
	switch {
	case isErrno(err, syscall.ENODATA):
		return nil, false, nil
	case backend.IsNotFound(err):
		return nil, false, backend.Errorf(backend.NotFound, "cephfs: no directory %s", ref)
	}
	return raw, err == nil, err
}

func (c *Controller) setDirXattr(s *session, ref volumeRef, name, value string) error {
	return s.do("set "+name+" of directory "+ref.String(), func() error {
		return s.conn.SetXattr(ref.fs, ref.dir, name, []byte(value))
	})
}

func (c *Controller) removeDirXattr(s *session, ref volumeRef, name string) error {
	err := s.do("remove "+name+" of directory "+ref.String(), func() error {
		return s.conn.RemoveXattr(ref.fs, ref.dir, name)
	})
	if isErrno(err, syscall.ENODATA) {
		return nil
	}
	return err
}

// dirVolume reports an adopted directory of size bytes.
func (c *Controller) dirVolume(id volid.Volume, ref volumeRef, rec volumeRecord, size int64) *backend.Volume {
	p := rec.Params
	if p.FSName == "" {
		p.FSName = ref.fs
	}
	return &backend.Volume{ID: id, CapacityBytes: size, RequestName: rec.Name,
		Context: volumeContext(c.cfg.ClusterID, "", "", ref.dir, p)}
}

// adoptedDir opens an adopted directory by its ID: NotFound when it is gone or no longer
// carries this backend's record for the ID's tenant (released, or adopted anew by another).
func (c *Controller) adoptedDir(ctx context.Context, id volid.Volume, secrets map[string]string) (*session, volumeRef, volumeRecord, error) {
	if id.Backend != c.name {
		return nil, volumeRef{}, volumeRecord{}, backend.Errorf(backend.NotFound, "volume %s is not on backend %q", id, c.name)
	}
	s, err := c.session(ctx, secrets)
	if err != nil {
		return nil, volumeRef{}, volumeRecord{}, err
	}
	ref, err := c.ref(s, id)
	if err != nil {
		return s, ref, volumeRecord{}, err
	}
	rec, found, err := c.recordOnDir(s, ref)
	if err != nil {
		return s, ref, rec, err
	}
	if !found || rec.Backend != c.name || rec.Request == nil || rec.Request.Tenant != id.Tenant {
		return s, ref, rec, backend.Errorf(backend.NotFound, "volume %s does not exist: directory %s carries no adoption of it", id, ref)
	}
	return s, ref, rec, nil
}

func (c *Controller) getDir(ctx context.Context, id volid.Volume, secrets map[string]string) (*backend.Volume, error) {
	s, ref, rec, err := c.adoptedDir(ctx, id, secrets)
	if err != nil {
		return nil, err
	}
	quota, err := c.dirBytes(s, ref, quotaXattr)
	if err != nil {
		return nil, err
	}
	return c.dirVolume(id, ref, rec, quota), nil
}

// adoptedDirs lists the directories of filesystem fs in this backend's index that carry
// its record, of tenant ("" for all); an entry whose directory is gone or released is
// passed over.
func (c *Controller) adoptedDirs(s *session, fs, loc, tenant string) ([]*backend.Volume, error) {
	entries, err := c.dirsOf(s, fs, c.adoptedIndex())
	if err != nil {
		return nil, err
	}
	var out []*backend.Volume
	for _, e := range entries {
		ref := volumeRef{fs: fs, dir: entryDir(e)}
		rec, found, err := c.recordOnDir(s, ref)
		if err != nil && (backend.IsNotFound(err) || backend.CodeOf(err) == backend.Internal) {
			continue // gone, or an attribute that is no record of ours
		}
		if err != nil {
			return nil, err
		}
		if !found || rec.Backend != c.name || rec.Request == nil || rec.Request.Tenant == "" || tenant != "" && rec.Request.Tenant != tenant {
			continue
		}
		id, err := volid.Adopted(c.name, rec.Request.Tenant, loc, ref.dir)
		if err != nil {
			continue
		}
		quota, err := c.dirBytes(s, ref, quotaXattr)
		if backend.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c.dirVolume(id, ref, rec, quota))
	}
	return out, nil
}

// expandDir raises the directory quota; mounted clients see it at once (no node step).
func (c *Controller) expandDir(ctx context.Context, id volid.Volume, requiredBytes int64, secrets map[string]string) (int64, bool, error) {
	s, ref, _, err := c.adoptedDir(ctx, id, secrets)
	if err != nil {
		return 0, false, err
	}
	cur, err := c.dirBytes(s, ref, quotaXattr)
	if err != nil || cur >= requiredBytes {
		return cur, false, err
	}
	if err := c.setDirXattr(s, ref, quotaXattr, strconv.FormatInt(requiredBytes, 10)); err != nil {
		return 0, false, err
	}
	got, err := c.dirBytes(s, ref, quotaXattr)
	if err != nil {
		return 0, false, err
	}
	if got < requiredBytes {
		return 0, false, backend.Errorf(backend.Internal, "quota of %s set to %d bytes reads back %d bytes", ref, requiredBytes, got)
	}
	return got, false, nil
}

// releaseDir is DeleteVolume of an adopted directory: it gives the directory back as it
// was before its adoption (its quota then, no shiphold attributes, no index entry) and
// keeps every file. A directory gone, released, or adopted anew by another is done.
func (c *Controller) releaseDir(ctx context.Context, id volid.Volume, secrets map[string]string) error {
	s, ref, _, err := c.adoptedDir(ctx, id, secrets)
	if backend.IsNotFound(err) {
		if s != nil && ref.dir != "" {
			return c.dropIndexEntry(s, ref)
		}
		return nil
	}
	if err != nil {
		return err
	}
	before, err := c.dirBytes(s, ref, quotaBeforeXattr)
	if err != nil {
		return err
	}
	// "0" removes a quota: the directory had none.
	if err := c.setDirXattr(s, ref, quotaXattr, strconv.FormatInt(before, 10)); err != nil {
		return err
	}
	for _, name := range []string{publishedXattr, quotaBeforeXattr, recordXattr} {
		if err := c.removeDirXattr(s, ref, name); err != nil {
			return err
		}
	}
	return c.dropIndexEntry(s, ref)
}

// dropIndexEntry removes the directory's index entry unless its record is back (adopted
// again since).
func (c *Controller) dropIndexEntry(s *session, ref volumeRef) error {
	if _, found, err := c.recordOnDir(s, ref); err == nil && found {
		return nil
	}
	err := s.do("remove index entry of "+ref.String(), func() error {
		return s.conn.RemoveDir(ref.fs, c.adoptedIndex()+"/"+indexEntry(ref.dir))
	})
	if backend.IsNotFound(err) {
		return nil
	}
	return err
}

// published reads the directory's publish records.
func (c *Controller) published(s *session, ref volumeRef) (map[string]string, error) {
	var raw []byte
	err := s.do("read publish records of "+ref.String(), func() (err error) {
		raw, err = s.conn.GetXattr(ref.fs, ref.dir, publishedXattr)
		return err
	})
	meta := map[string]string{}
	if isErrno(err, syscall.ENODATA) {
		return meta, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, backend.Errorf(backend.Internal, "cephfs: attribute %s of %s is not shiphold's publish records: %v", publishedXattr, ref, err)
	}
	return meta, nil
}

func (c *Controller) writePublished(s *session, ref volumeRef, meta map[string]string) error {
	if len(meta) == 0 {
		return c.removeDirXattr(s, ref, publishedXattr)
	}
	raw, _ := json.Marshal(meta)
	return c.setDirXattr(s, ref, publishedXattr, string(raw))
}

// publishDir records that node may use the directory, with the rules of a subvolume's
// publish. It hands no tenant identity: the directory's files are not in the tenant's
// RADOS namespace, so its node stages it with its PV's node-stage secret.
func (c *Controller) publishDir(ctx context.Context, id volid.Volume, node backend.Node, access backend.PublishAccess, secrets map[string]string) error {
	return c.withPublished(ctx, id, secrets, func(meta map[string]string) (bool, error) {
		key, mode, err := backend.NewPublishRecord(id.String(), node, access, meta)
		if err != nil || key == "" {
			return false, err
		}
		meta[key] = mode
		return true, nil
	})
}

// unpublishDir removes node's record, or every node's when node has no name.
func (c *Controller) unpublishDir(ctx context.Context, id volid.Volume, node backend.Node, secrets map[string]string) error {
	return c.withPublished(ctx, id, secrets, func(meta map[string]string) (bool, error) {
		n := len(meta)
		for k := range meta {
			if k == backend.PublishRecordKey(node) || node.Name == "" && backend.IsPublishRecordKey(k) {
				delete(meta, k)
			}
		}
		return len(meta) != n, nil
	})
}

// withPublished reads the adopted directory's publish records, lets change edit them, and
// writes them back when it says they changed. The driver runs one call per volume at a
// time, so the read and the write see no other publish in between.
func (c *Controller) withPublished(ctx context.Context, id volid.Volume, secrets map[string]string, change func(map[string]string) (bool, error)) error {
	s, ref, _, err := c.adoptedDir(ctx, id, secrets)
	if err != nil {
		return err
	}
	meta, err := c.published(s, ref)
	if err != nil {
		return err
	}
	if changed, err := change(meta); err != nil || !changed {
		return err
	}
	return c.writePublished(s, ref, meta)
}

// noDirSnapshots is the answer to a snapshot of an adopted plain directory.
func noDirSnapshots(id volid.Volume) error {
	return backend.Errorf(backend.FailedPrecondition, "volume %s is an adopted plain CephFS directory (%s): shiphold snapshots and restores through the Ceph mgr, which handles only subvolumes; snapshot it with mkdir %s/.snap/NAME on a CephFS mount, or migrate it into a shiphold volume", id, id.Object, id.Object)
}
