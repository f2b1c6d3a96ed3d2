package cephfs

import (
	"context"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

var _ backend.Adopter = (*Controller)(nil)

// adoptedRef is where an adopted subvolume lives: its own group ("_nogroup" for the
// default one) and name, carried by its ID as "<group>/<subvolume>".
func adoptedRef(fs string, id volid.Volume) volumeRef {
	if isDirObject(id.Object) {
		return volumeRef{fs: fs, dir: id.Object}
	}
	group, sub, _ := strings.Cut(id.Object, "/")
	return volumeRef{fs: fs, group: group, sub: sub}
}

// Adopt takes an existing subvolume ("<fs>/<group>/<subvolume>", group "_nogroup" for the
// default group) under management where it is: its quota is kept, or set to the size
// asked, and shiphold's request record goes on its base directory.
func (c *Controller) Adopt(ctx context.Context, req *backend.AdoptRequest) (*backend.Volume, error) {
	if strings.Contains(req.Object, ":") {
		return c.adoptDir(ctx, req)
	}
	parts := strings.Split(req.Object, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, backend.Errorf(backend.InvalidArgument, "cephfs: %q is not <fs>/<group>/<subvolume> (group _nogroup for the default group), nor <fs>:<absolute path> (a plain directory)", req.Object)
	}
	params := map[string]string{}
	for k, v := range req.Parameters {
		params[k] = v
	}
	params[ParamFSName] = parts[0]
	p, err := parseParams(params, c.cfg)
	if err != nil {
		return nil, err
	}
	ref := volumeRef{fs: parts[0], group: parts[1], sub: parts[2]}
	if ref.group == groupName(c.prefix, req.Tenant) && strings.HasPrefix(ref.sub, subvolumePrefix) {
		return nil, backend.Errorf(backend.AlreadyExists, "cephfs: %s is in shiphold's own place for tenant %q; use its volume ID, do not adopt it", req.Object, req.Tenant)
	}
	s, err := c.session(ctx, req.Secrets)
	if err != nil {
		return nil, err
	}
	loc, err := c.fsID(s, ref.fs)
	if err != nil {
		return nil, err
	}
	id, err := volid.Adopted(c.name, req.Tenant, loc, ref.group+"/"+ref.sub)
	if err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "cephfs: cannot adopt %s: %v", req.Object, err)
	}
	size, err := c.adoptQuota(s, req, ref)
	if err != nil {
		return nil, err
	}
	vr := &backend.VolumeRequest{Name: req.Name, Tenant: req.Tenant, RequiredBytes: size, Parameters: params}
	rr := backend.NewRequestRecord(vr)
	rec := volumeRecord{Name: req.Name, Bytes: size, Params: p, Request: &rr, Backend: c.name}
	if err := c.writeRecord(s, ref, rec); err != nil {
		return nil, err
	}
	return c.volume(s, id, ref, rec)
}

// adoptQuota refuses a subvolume recorded for another request and settles its size: the
// size asked when larger than its quota, else its quota; one with neither is refused.
func (c *Controller) adoptQuota(s *session, req *backend.AdoptRequest, ref volumeRef) (int64, error) {
	info, err := c.info(s, ref)
	if backend.IsNotFound(err) {
		return 0, backend.Errorf(backend.NotFound, "cephfs: no subvolume %s to adopt", req.Object)
	}
	if err != nil {
		return 0, err
	}
	rec, found, err := c.recordOnDir(s, ref)
	if err != nil {
		return 0, err
	}
	if err := c.checkAdoptable(req, rec, found); err != nil {
		return 0, err
	}
	size := quotaBytes(info)
	if req.SizeBytes <= size {
		if size == 0 {
			return 0, backend.Errorf(backend.InvalidArgument, "cephfs: %s has no quota; give the size to adopt it with", req.Object)
		}
		return size, nil
	}
	if err := s.do("resize subvolume "+ref.String(), func() error {
		return resizeSubvolume(s.conn, ref.fs, ref.group, ref.sub, req.SizeBytes, true)
	}); err != nil {
		return 0, err
	}
	return req.SizeBytes, nil
}
