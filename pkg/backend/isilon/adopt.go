package isilon

import (
	"context"
	"path"
	"slices"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

var _ backend.Adopter = (*Controller)(nil)

// Adopt takes an existing directory under management where it is: its export (found by
// path, or created) gets the never-open placeholder beside the clients it has, its quota
// (kept, raised to the size asked, or created hard) bounds it, and shiphold's request
// record goes on it, so every call by its adopted ID works as on a created volume. The
// class's accessZone names the zone whose exports it is looked up (or made) in.
func (c *Controller) Adopt(ctx context.Context, req *backend.AdoptRequest) (*backend.Volume, error) {
	dir := path.Clean(req.Object)
	if !strings.HasPrefix(dir, "/ifs/") || dir != req.Object {
		return nil, backend.Errorf(backend.InvalidArgument, "isilon: %q is not a clean absolute path below /ifs/", req.Object)
	}
	if err := c.refuseOwnPlace(dir); err != nil {
		return nil, err
	}
	root, z, server, err := c.classPlacement(req.Parameters)
	if err != nil {
		return nil, err
	}
	id, err := volid.Adopted(c.name, req.Tenant, z.key, dir)
	if err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "isilon: cannot adopt %s: %v", dir, err)
	}
	var vol *backend.Volume
	err = c.storage.Do(ctx, req.Secrets, func(a client) error {
		if err := c.checkZone(ctx, a, z); err != nil {
			return err
		}
		size, err := c.adoptRecord(ctx, a, req, dir)
		if err != nil {
			return err
		}
		e, err := c.adoptExport(ctx, a, z, dir)
		if err != nil {
			return err
		}
		ctxMap := c.volumeContext(z, dir, e.ID, root)
		ctxMap[CtxNFSServer] = server
		vol = &backend.Volume{ID: id, CapacityBytes: size, Context: ctxMap, RequestName: req.Name}
		return nil
	})
	return vol, err
}

// refuseOwnPlace keeps adoption away from shiphold's own trees (one per access zone): its
// volumes have IDs already, and a directory holding them would be deleted with them.
func (c *Controller) refuseOwnPlace(dir string) error {
	for _, z := range zones(c.cfg) {
		if err := refuseTree(dir, z.isiPath); err != nil {
			return err
		}
	}
	return nil
}

func refuseTree(dir, own string) error {
	if rel, ok := strings.CutPrefix(dir, own+"/"); ok {
		if _, vol, ok := strings.Cut(rel, "/"); ok && !strings.Contains(vol, "/") && strings.HasPrefix(vol, volumePrefix) {
			return backend.Errorf(backend.AlreadyExists, "isilon: %s is a volume shiphold created; use its volume ID, do not adopt it", dir)
		}
	}
	if dir == own || strings.HasPrefix(own, dir+"/") || strings.HasPrefix(dir, own+"/") {
		return backend.Errorf(backend.InvalidArgument, "isilon: %s is or holds shiphold's own tree %s (isiPath); adopt a directory outside it", dir, own)
	}
	return nil
}

// adoptRecord settles the size (the request's, else the quota's hard limit), sets the quota
// and records the adoption; a record of another tenant or request is a collision.
func (c *Controller) adoptRecord(ctx context.Context, a array, req *backend.AdoptRequest, dir string) (int64, error) {
	attrs, err := a.Attrs(ctx, dir)
	if backend.IsNotFound(err) {
		return 0, backend.Errorf(backend.NotFound, "isilon: no directory %s to adopt", dir)
	}
	if err != nil {
		return 0, err
	}
	if _, ok := attrs[attrRecord]; ok {
		rec, err := recordOf(attrs)
		if b := attrs[attrBackend]; b != "" && b != c.name {
			return 0, backend.Errorf(backend.AlreadyExists, "isilon: %s is already managed by shiphold backend %q; it cannot be adopted by backend %q too", dir, b, c.name)
		}
		if err != nil || rec.Name != req.Name || rec.Tenant != req.Tenant {
			return 0, backend.Errorf(backend.AlreadyExists, "isilon: %s is already managed by shiphold as %q of tenant %q; it cannot be adopted as %q of tenant %q", dir, rec.Name, rec.Tenant, req.Name, req.Tenant)
		}
	}
	size := req.SizeBytes
	q, err := a.DirQuota(ctx, dir)
	if err != nil {
		return 0, err
	}
	if q != nil && q.Hard > size {
		size = q.Hard
	}
	if size <= 0 {
		return 0, backend.Errorf(backend.InvalidArgument, "isilon: %s has no hard quota; give the size to adopt it with", dir)
	}
	if err := c.ensureQuota(ctx, a, dir, size); err != nil {
		return 0, err
	}
	vr := &backend.VolumeRequest{Name: req.Name, Tenant: req.Tenant, RequiredBytes: size, Parameters: req.Parameters}
	attrs = record(vr, size, "")
	attrs[attrBackend] = c.name
	return size, a.SetAttrs(ctx, dir, attrs)
}

// attrBackend names the backend that adopted a directory: several backends may share an
// array, and only the adopting one lists the directory as its volume.
const attrBackend = "SHIPHOLD_BACKEND"

// adoptExport keeps the directory's export and its clients (legacy mounts go on working
// until their PVs move) and adds the placeholder that keeps it closed once they are gone.
func (c *Controller) adoptExport(ctx context.Context, a array, z accessZone, dir string) (*Export, error) {
	e, err := a.ExportOf(ctx, z.name, dir)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return c.ensureExport(ctx, a, z, dir)
	}
	if slices.Contains(e.ReadOnlyClients, NoAccessClient) {
		return e, nil
	}
	e.ReadOnlyClients = append(e.ReadOnlyClients, NoAccessClient)
	return e, a.UpdateExportClients(ctx, *e)
}

// adoptedVolumes lists the adopted directories of tenant ("" for all) from the array: an
// adopted directory always has a hard quota (Adopt keeps or sets one) and carries the
// request record, so the directories with a hard quota outside shiphold's own trees are
// read for a record. hard is the quota list ListVolumes read already.
func (c *Controller) adoptedVolumes(ctx context.Context, a array, tenant string, hard map[string]int64) ([]*backend.Volume, error) {
	var vols []*backend.Volume
	for dir, bytes := range hard {
		if _, own := zoneOfPath(c.cfg, dir); own || bytes <= 0 || !strings.HasPrefix(dir, "/ifs/") {
			continue
		}
		v, err := c.adoptedVolume(ctx, a, dir, bytes)
		if err != nil {
			return nil, err
		}
		if v != nil && (tenant == "" || v.ID.Tenant == tenant) {
			vols = append(vols, v)
		}
	}
	return vols, nil
}

// adoptedVolume reads one directory's record: nil when it has none (a legacy directory not
// adopted), another backend adopted it, it went meanwhile, or its zone is not one of this
// backend's.
func (c *Controller) adoptedVolume(ctx context.Context, a array, dir string, bytes int64) (*backend.Volume, error) {
	attrs, err := a.Attrs(ctx, dir)
	if backend.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, ok := attrs[attrRecord]; !ok || attrs[attrBackend] != c.name {
		return nil, nil
	}
	rec, err := recordOf(attrs)
	if err != nil || rec.Tenant == "" {
		return nil, nil
	}
	z, err := zoneOfParams(c.cfg, rec.Params)
	if err != nil {
		return nil, nil
	}
	id, err := volid.Adopted(c.name, rec.Tenant, z.key, dir)
	if err != nil {
		return nil, nil
	}
	return &backend.Volume{ID: id, CapacityBytes: bytes, Context: c.volumeContext(z, dir, 0, false), RequestName: rec.Name}, nil
}
