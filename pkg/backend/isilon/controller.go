// Package isilon is the PowerScale (OneFS) NFS backend: a volume is a directory
// <isiPath>/<tenant>/csi-vol-<hash> with a hard directory quota of its size and an NFS
// export, driven through Dell's goisilon client. The node side mounts the export over NFS.
//
// Config keys beside endpoint, accessZone, isiPath, zones (zones.go), nfsServer and credentials:
// requestTimeout (one Platform API call, default 30s), copyTimeout (a clone's or
// restore's data copy, default 12h) and copySettle (how long an unfinished clone must
// stay unchanged before its copy is redone, default 30s). A clone or restore is copied
// into <tenant>/csi-tmp-<hash>, checked and renamed into place when complete; CreateVolume
// answers ABORTED while the copy runs (see clone.go).
package isilon

import (
	"context"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// StorageClass parameters.
const (
	// ParamRootClientEnabled ("true"/"false", default false) lists published nodes in the
	// export's root_clients too, so root on the node is not squashed.
	ParamRootClientEnabled = "rootClientEnabled"
	// ParamNFSServer is the NFS server nodes mount the class's volumes from (a SmartConnect
	// zone name or an address), instead of the backend's nfsServer.
	ParamNFSServer = "nfsServer"
)

// Volume context keys, handed back on ControllerPublish and NodeStage.
const (
	CtxNFSServer         = "nfsServer"
	CtxExportPath        = "exportPath"
	CtxZone              = "zone"
	CtxExportID          = "exportID"
	CtxRootClientEnabled = ParamRootClientEnabled
)

// User attributes recorded on each volume directory, so a retried CreateVolume finds its
// volume and a same-name request of another size or source gets AlreadyExists. They are
// named as OneFS stores header attributes (upper case, '_'): see canonicalAttr.
const (
	attrRequest = "SHIPHOLD_REQUEST"
	attrSize    = "SHIPHOLD_SIZE"
	attrSource  = "SHIPHOLD_SOURCE"
	// attrRecord is the shared request record (escaped JSON); older volumes have none.
	attrRecord = "SHIPHOLD_RECORD"
	// attrCopied marks a clone whose data copy finished, so a retry does not copy again.
	attrCopied = "SHIPHOLD_COPIED"
)

const (
	volumePrefix   = "csi-vol-"
	snapshotPrefix = "csi-snap-"
	// DefaultVolumeSize is used when a request gives neither required nor limit bytes.
	DefaultVolumeSize = 1 << 30
	volumeMode        = "0777"
	// tenantMode keeps other users from listing a tenant's volumes through any export
	// above it (a site's legacy export of the tree): without the name of a volume
	// directory (a hash of an unguessable PV name) nobody but the array's own user gets in.
	// Search stays open to all: OneFS may walk an NFSv4 export's parents as the (squashed)
	// client, and 0700 would then refuse the tenant's own mounts.
	tenantMode   = "0711"
	probeTimeout = 5 * time.Second
)

// NoAccessClient is the placeholder that keeps every export's client lists non-empty.
// OneFS (like nfs-ganesha here) opens an export whose client lists are all empty to every
// host, so an export is created with this one read-only client and keeps it for its whole
// life: 192.0.2.1 is in TEST-NET-1 (RFC 5737), reserved for documentation and never
// assigned to a real host, so it grants nobody access. Published nodes are added beside it.
const NoAccessClient = "192.0.2.1"

// Controller provisions volumes on one OneFS cluster.
type Controller struct {
	name string
	cfg  *Config
	conn *connector
	// storage runs requests against the array for their secrets through conn.
	storage backend.Storage[client]

	mu      sync.Mutex
	tenants map[string]bool // tenant directories known to exist with their quota
	// zonesChecked are the isilon.zones found on the array with isiPath in their base.
	zonesChecked map[string]bool
	jobs         map[string]*cloneJob // clone copies running, by temporary directory

	jobCtx      context.Context // ends clone copies at Close
	stopJobs    context.CancelFunc
	jobsRunning sync.WaitGroup
}

var (
	_ backend.Controller = (*Controller)(nil)
	_ backend.Publisher  = (*Controller)(nil)
)

// NewController checks the config; it does not contact the array (the first call does).
func NewController(cfg *config.Backend) (*Controller, error) {
	ic, err := config.SectionAs[*Config](cfg)
	if err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "isilon backend: %v", err)
	}
	conn, err := newConnector(ic)
	if err != nil {
		return nil, err
	}
	if ic.CACertFile != "" && !ic.InsecureSkipVerify {
		// goisilon v1.20.0 verifies against the system pool only.
		klog.Warningf("isilon backend %q: caCertFile %s is not used by goisilon v1.20.0; add the CA to the system trust store", cfg.Name, ic.CACertFile)
	}
	c := &Controller{name: cfg.Name, cfg: ic, conn: conn, storage: conn.storage(), tenants: map[string]bool{}, jobs: map[string]*cloneJob{},
		zonesChecked: map[string]bool{}}
	c.jobCtx, c.stopJobs = context.WithCancel(context.Background())
	return c, nil
}

func (c *Controller) Name() string { return c.name }
func (c *Controller) Kind() string { return backend.KindIsilon }

func (c *Controller) ParameterKeys() []string {
	return []string{ParamRootClientEnabled, ParamNFSServer, ParamAccessZone}
}

// Close stops the clone copies this process waits for (the array may finish them; a
// retry in the next process checks and completes them).
func (c *Controller) Close() {
	c.stopJobs()
	c.jobsRunning.Wait()
}

// VolumeDir is the OneFS directory of a volume, in the access zone its ID names.
func (c *Controller) VolumeDir(id volid.Volume) (string, error) {
	z, err := zoneOfID(c.cfg, id)
	if err != nil {
		return "", err
	}
	return z.volumeDir(id), nil
}

// place resolves a volume's zone and directory.
func (c *Controller) place(id volid.Volume) (accessZone, string, error) {
	z, err := zoneOfID(c.cfg, id)
	return z, z.volumeDir(id), err
}

func snapshotName(snapHash string) string { return snapshotPrefix + snapHash }

func parseRootClient(params map[string]string) (bool, error) {
	v, ok := params[ParamRootClientEnabled]
	if !ok || v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, backend.Errorf(backend.InvalidArgument, "StorageClass parameter %s=%q must be true or false", ParamRootClientEnabled, v)
	}
	return b, nil
}

func (c *Controller) volumeContext(z accessZone, dir string, exportID int, root bool) map[string]string {
	ctx := map[string]string{
		CtxNFSServer: z.nfsServer, CtxExportPath: dir, CtxZone: z.name,
		CtxRootClientEnabled: strconv.FormatBool(root),
	}
	if exportID > 0 {
		ctx[CtxExportID] = strconv.Itoa(exportID)
	}
	return ctx
}

func requestSize(req *backend.VolumeRequest) int64 {
	switch {
	case req.RequiredBytes > 0:
		return req.RequiredBytes
	case req.LimitBytes > 0 && req.LimitBytes < DefaultVolumeSize:
		return req.LimitBytes
	}
	return DefaultVolumeSize
}

func sourceString(req *backend.VolumeRequest) string {
	switch {
	case req.SourceSnapshot != nil:
		return req.SourceSnapshot.String()
	case req.SourceVolume != nil:
		return req.SourceVolume.String()
	}
	return ""
}

// CreateVolume makes (or finds again) the directory, its quota and its export. A clone
// or restore waits for its data copy (clone.go), answering Pending if the copy outlasts
// the request.
func (c *Controller) CreateVolume(ctx context.Context, req *backend.VolumeRequest) (*backend.Volume, error) {
	root, z, server, err := c.classPlacement(req.Parameters)
	if err != nil {
		return nil, err
	}
	if err := checkSameZone(z, req); err != nil {
		return nil, err
	}
	id := req.ID(c.name, z.key)
	if err := id.Validate(); err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "isilon: volume ID: %v", err)
	}
	for {
		vol, job, err := c.createOnce(ctx, req, z, id, root)
		if job == nil || err != nil {
			if vol != nil {
				vol.Context[CtxNFSServer] = server
			}
			return vol, err
		}
		// Outside the connection slot: a copy may take longer than the request.
		waited := backend.LongWait(ctx, "clone copy", "directory", job.tmp)
		err = job.wait(ctx)
		if waited(err); err != nil {
			return nil, err
		}
	}
}

// classPlacement reads what a StorageClass says about where a volume lives and how nodes
// reach it: root for its root clients, its access zone, and the NFS server to mount from.
func (c *Controller) classPlacement(params map[string]string) (root bool, z accessZone, server string, err error) {
	if root, err = parseRootClient(params); err != nil {
		return false, z, "", err
	}
	if z, err = zoneOfParams(c.cfg, params); err != nil {
		return false, z, "", err
	}
	server, err = nfsServerOf(z, params, ParamNFSServer)
	return root, z, server, err
}

// createOnce moves the volume as far as it can in one pass; a returned job is a clone
// copy to wait for before the next pass.
func (c *Controller) createOnce(ctx context.Context, req *backend.VolumeRequest, z accessZone, id volid.Volume, root bool) (*backend.Volume, *cloneJob, error) {
	dir := z.volumeDir(id)
	size := requestSize(req)
	source := sourceString(req)
	var vol *backend.Volume
	var job *cloneJob
	err := c.storage.Do(ctx, req.Secrets, func(a client) error {
		if err := c.checkZone(ctx, a, z); err != nil {
			return err
		}
		if err := c.ensureTenant(ctx, a, z.tenantDir(req.Tenant)); err != nil {
			return err
		}
		var e *Export
		var err error
		if source == "" {
			e, err = c.createNew(ctx, a, req, z, dir, size)
		}
		if e == nil && err == nil {
			if job, size, err = c.completeExisting(ctx, a, req, z, id, size, source); job != nil || err != nil {
				return err
			}
			e, err = c.ensureExport(ctx, a, z, dir)
		}
		if err != nil {
			return err
		}
		vol = &backend.Volume{ID: id, CapacityBytes: size, Context: c.volumeContext(z, dir, e.ID, root),
			SourceSnapshot: req.SourceSnapshot, SourceVolume: req.SourceVolume, RequestName: req.Name}
		return nil
	})
	return vol, job, err
}

// createNew makes a new volume in three requests: the directory with its request record,
// its quota and its export, none of which can exist before the directory. It returns nil
// without error when the directory exists already (a retry, or a concurrent create).
// The quota and the export are not asked for at once, though neither needs the other
// (one round trip less per create): the OneFS simulator enforces a hard quota by making
// the directory a btrfs subvolume, which leaves an export made before it stale under
// nfs-ganesha (TestIsilonHardQuotaThroughNFS failed so: NFS3ERR_STALE at mount).
func (c *Controller) createNew(ctx context.Context, a array, req *backend.VolumeRequest, z accessZone, dir string, size int64) (*Export, error) {
	made, err := a.CreateDir(ctx, dir, volumeMode, record(req, size, ""))
	if err != nil || !made {
		return nil, err
	}
	if err := a.CreateDirQuota(ctx, dir, size); err != nil {
		// A 409 may be a transient conflict as well as a duplicate: look, as a retry would.
		if err := c.ensureQuota(ctx, a, dir, size); err != nil {
			return nil, err
		}
	}
	e := &Export{Zone: z.name, Path: dir, ReadOnlyClients: []string{NoAccessClient}, SquashesRoot: true}
	if e.ID, err = a.CreateExport(ctx, *e); err != nil {
		return c.ensureExport(ctx, a, z, dir)
	}
	return e, nil
}

// completeExisting finishes a volume whose directory may exist: a clone's copy, a record
// left out by a crash, a missing quota. It returns the volume's size, or a copy to wait for.
func (c *Controller) completeExisting(ctx context.Context, a array, req *backend.VolumeRequest, z accessZone, id volid.Volume, size int64, source string) (*cloneJob, int64, error) {
	dir := z.volumeDir(id)
	attrs, err := a.Attrs(ctx, dir)
	if backend.IsNotFound(err) && source != "" {
		if job, err := c.stageClone(ctx, a, req, z, id, size, source); job != nil || err != nil {
			return job, 0, err
		}
		attrs, err = a.Attrs(ctx, dir) // renamed into place just now
	}
	switch {
	case backend.IsNotFound(err):
		if err := a.Mkdir(ctx, dir, volumeMode, record(req, size, source)); err != nil {
			return nil, 0, err
		}
	case err != nil:
		return nil, 0, err
	default:
		if size, err = c.checkExisting(ctx, a, req, dir, attrs, size, source); err != nil {
			return nil, 0, err
		}
		// A process killed between a volume clone's rename and the drop of its temporary
		// snapshot left that snapshot, which would pin the source's blocks for the
		// clone's whole life.
		if req.SourceVolume != nil {
			if err := c.dropCloneSnapshot(ctx, a, id); err != nil {
				return nil, 0, err
			}
		}
	}
	return nil, size, c.ensureQuota(ctx, a, dir, size)
}

// checkExisting decides whether the directory found is this request's volume and returns
// its size. A clone's directory appears only once its copy is complete.
func (c *Controller) checkExisting(ctx context.Context, a array, req *backend.VolumeRequest, dir string, attrs map[string]string, size int64, source string) (int64, error) {
	if _, ok := attrs[attrRequest]; !ok {
		if source != "" {
			return 0, backend.Errorf(backend.FailedPrecondition, "isilon: %s exists without shiphold's record; it cannot be clone %q's volume (move it away)", dir, req.Name)
		}
		// Created by a create that crashed before its attributes landed: adopt it.
		return size, a.SetAttrs(ctx, dir, record(req, size, source))
	}
	have, err := checkRecord(req, dir, attrs, size)
	if err != nil {
		return 0, err
	}
	if source != "" && attrs[attrCopied] != "true" {
		return 0, backend.Errorf(backend.FailedPrecondition, "isilon: %s is a clone whose copy never completed (made by an older driver version); delete volume %q and create it again", dir, req.Name)
	}
	return have, nil
}

// checkRecord judges req against the request recorded on dir by the shared conflict rule,
// with the recorded size as the volume's capacity; it returns that size.
func checkRecord(req *backend.VolumeRequest, dir string, attrs map[string]string, size int64) (int64, error) {
	rec, err := recordOf(attrs)
	if err != nil {
		return 0, backend.Errorf(backend.Internal, "isilon: %s: attribute %s is not a shiphold record: %v", dir, attrRecord, err)
	}
	have, _ := strconv.ParseInt(attrs[attrSize], 10, 64)
	if err := rec.Conflict(req, have); err != nil {
		return 0, err
	}
	if have == 0 {
		have = size
	}
	return have, nil
}

// recordOf reads the request record of a volume directory; an older volume's is made of
// its name and source attributes, without parameters.
func recordOf(attrs map[string]string) (backend.RequestRecord, error) {
	if raw, ok := attrs[attrRecord]; ok {
		return backend.DecodeRequestRecord(unescapeAttr(raw))
	}
	return backend.RequestRecord{Name: unescapeAttr(attrs[attrRequest]), Source: attrs[attrSource]}, nil
}

// ensureTenant makes a tenant directory and its accounting quota once per process. The
// tenant quota has no hard threshold: the tenant limits live in the driver config and are
// enforced by the driver at CreateVolume; the quota gives the array's view of the usage.
func (c *Controller) ensureTenant(ctx context.Context, a array, dir string) error {
	c.mu.Lock()
	known := c.tenants[dir]
	c.mu.Unlock()
	if known {
		return nil
	}
	if err := a.Mkdir(ctx, dir, tenantMode, nil); err != nil {
		return err
	}
	// Mkdir leaves an existing directory as it is: older versions made it 0755.
	if err := a.Chmod(ctx, dir, tenantMode); err != nil {
		return err
	}
	q, err := a.DirQuota(ctx, dir)
	if err != nil {
		return err
	}
	if q == nil {
		if _, err := createDirQuota(ctx, a, dir, 0); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.tenants[dir] = true
	c.mu.Unlock()
	return nil
}

func (c *Controller) ensureQuota(ctx context.Context, a array, dir string, size int64) error {
	q, err := a.DirQuota(ctx, dir)
	if err != nil {
		return err
	}
	if q == nil {
		if q, err = createDirQuota(ctx, a, dir, size); err != nil {
			return err
		}
	}
	if q.Hard < size {
		return a.SetQuotaHard(ctx, q.ID, size)
	}
	return nil
}

// createDirQuota creates a directory quota, or finds the one a concurrent or lost create
// made. Whatever the array answered, only the quota being there counts: OneFS's 409 is
// also a transient conflict, which must not pass for "it exists".
func createDirQuota(ctx context.Context, a array, dir string, hard int64) (*Quota, error) {
	err := a.CreateDirQuota(ctx, dir, hard)
	q, lookErr := a.DirQuota(ctx, dir)
	switch {
	case lookErr != nil:
		return nil, lookErr
	case q != nil:
		return q, nil
	case err == nil:
		return nil, backend.Errorf(backend.Unavailable, "isilon: the quota on %s was created but is not listed; retry", dir)
	}
	return nil, err
}

// ensureExport finds the volume's export by path in the zone, or creates it with only the
// no-access placeholder client. Root is squashed on it (root_clients keep root): an export
// an older version made inherited its zone's default, which an admin may have opened.
func (c *Controller) ensureExport(ctx context.Context, a array, z accessZone, dir string) (*Export, error) {
	e, err := a.ExportOf(ctx, z.name, dir)
	if err != nil {
		return nil, err
	}
	return c.settleExport(ctx, a, z, dir, e)
}

// settleExport is ensureExport once the export e was looked up (nil: none was found).
func (c *Controller) settleExport(ctx context.Context, a array, z accessZone, dir string, e *Export) (*Export, error) {
	var err error
	if e != nil {
		if !e.SquashesRoot {
			if err := a.SquashRoot(ctx, z.name, e.ID); err != nil {
				return nil, err
			}
			e.SquashesRoot = true
		}
		return e, nil
	}
	e = &Export{Zone: z.name, Path: dir, ReadOnlyClients: []string{NoAccessClient}, SquashesRoot: true}
	if e.ID, err = a.CreateExport(ctx, *e); err != nil {
		// OneFS refuses a second export with the same rules (409): another controller
		// may have made it since the lookup.
		if found, lookErr := a.ExportOf(ctx, z.name, dir); lookErr == nil && found != nil {
			return found, nil
		}
		return nil, err
	}
	return e, nil
}

// DeleteVolume removes the export first (so no export outlives its directory and access
// ends before data goes), then the quota, then the directory. Each step treats "absent" as
// done, so a retry after a partial delete finishes it. Snapshots of the volume are
// independent of the directory on OneFS and stay until DeleteSnapshot.
func (c *Controller) DeleteVolume(ctx context.Context, id volid.Volume, secrets map[string]string) error {
	z, dir, err := c.place(id)
	if err != nil {
		return err
	}
	return c.storage.Do(ctx, secrets, func(a client) error {
		// Only a clone, or a volume whose directory is gone (a clone cut short, or a
		// retried delete), can have left a temporary copy or snapshot behind. The record
		// and the export are looked up at once.
		var attrs map[string]string
		var e *Export
		attrsErr, exportErr := atOnce(func() error {
			var err error
			if attrs, err = a.Attrs(ctx, dir); backend.IsNotFound(err) {
				return err // no record: the clone leftovers are looked for below
			}
			return err
		}, func() error {
			var err error
			e, err = a.ExportOf(ctx, z.name, dir)
			return err
		})
		if attrsErr != nil && !backend.IsNotFound(attrsErr) {
			return attrsErr
		}
		if exportErr != nil {
			return exportErr
		}
		mayHaveClone := attrsErr != nil || attrs[attrSource] != ""
		if err := c.removeVolume(ctx, a, z, dir, e); err != nil {
			return err
		}
		if !mayHaveClone {
			return nil
		}
		return c.dropClone(ctx, a, z, id)
	})
}

// removeVolume removes a volume directory's export e (nil: it has none) and its quota, at
// once, and then the directory: no export outlives its directory, and access ends before
// data goes. Absent objects count as removed.
func (c *Controller) removeVolume(ctx context.Context, a array, z accessZone, dir string, e *Export) error {
	exportErr, quotaErr := atOnce(func() error {
		if e == nil {
			return nil
		}
		if err := a.DeleteExport(ctx, z.name, e.ID); err != nil && !backend.IsNotFound(err) {
			return err
		}
		return nil
	}, func() error {
		if err := a.DeleteDirQuota(ctx, dir); err != nil && !backend.IsNotFound(err) {
			return err
		}
		return nil
	})
	if exportErr != nil {
		return exportErr
	}
	if quotaErr != nil {
		return quotaErr
	}
	if err := a.RemoveAll(ctx, dir); err != nil && !backend.IsNotFound(err) {
		return err
	}
	return nil
}

func parseSource(s string) (*volid.Snapshot, *volid.Volume) {
	if s == "" {
		return nil, nil
	}
	if snap, err := volid.ParseSnapshot(s); err == nil {
		return &snap, nil
	}
	if v, err := volid.ParseVolume(s); err == nil {
		return nil, &v
	}
	return nil, nil
}

// GetVolume reads the directory's recorded attributes; NotFound when it is absent.
func (c *Controller) GetVolume(ctx context.Context, id volid.Volume, secrets map[string]string) (*backend.Volume, error) {
	z, dir, err := c.place(id)
	if err != nil {
		return nil, err
	}
	var vol *backend.Volume
	err = c.storage.Do(ctx, secrets, func(a client) error {
		attrs, err := a.Attrs(ctx, dir)
		if err != nil {
			if backend.IsNotFound(err) {
				return backend.Errorf(backend.NotFound, "isilon: volume %s does not exist (no directory %s)", id, dir)
			}
			return err
		}
		size, _ := strconv.ParseInt(attrs[attrSize], 10, 64)
		snap, src := parseSource(attrs[attrSource])
		vol = &backend.Volume{ID: id, CapacityBytes: size, Context: c.volumeContext(z, dir, 0, false),
			SourceSnapshot: snap, SourceVolume: src, RequestName: unescapeAttr(attrs[attrRequest])}
		return nil
	})
	return vol, err
}

// ListVolumes lists csi-vol-* directories of one tenant or all, in every access zone of
// the backend, and the directories adopted in place; capacities come from the directory
// quotas, read in one call.
func (c *Controller) ListVolumes(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	var vols []*backend.Volume
	err := c.storage.Do(ctx, nil, func(a client) error {
		hard, err := hardThresholds(ctx, a)
		if err != nil {
			return err
		}
		for _, z := range zones(c.cfg) {
			found, err := c.zoneVolumes(ctx, a, z, tenant, hard)
			if err != nil {
				return err
			}
			vols = append(vols, found...)
		}
		adopted, err := c.adoptedVolumes(ctx, a, tenant, hard)
		vols = append(vols, adopted...)
		return err
	})
	return vols, err
}

// zoneVolumes lists the volumes of one zone, of tenant or all tenants.
func (c *Controller) zoneVolumes(ctx context.Context, a array, z accessZone, tenant string, hard map[string]int64) ([]*backend.Volume, error) {
	tenants := []string{tenant}
	if tenant == "" {
		names, err := a.Children(ctx, z.isiPath)
		if backend.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		tenants = names
	}
	var vols []*backend.Volume
	for _, t := range tenants {
		if volid.ValidTenant(t) != nil {
			continue
		}
		names, err := a.Children(ctx, z.tenantDir(t))
		if backend.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			id := volid.Volume{Backend: c.name, Tenant: t, Location: z.key, Hash: strings.TrimPrefix(n, volumePrefix)}
			if !strings.HasPrefix(n, volumePrefix) || id.Validate() != nil {
				continue
			}
			dir := z.volumeDir(id)
			vols = append(vols, &backend.Volume{ID: id, CapacityBytes: hard[dir], Context: c.volumeContext(z, dir, 0, false)})
		}
	}
	return vols, nil
}

// ExpandVolume raises the hard threshold; NFS needs no node-side growth.
func (c *Controller) ExpandVolume(ctx context.Context, id volid.Volume, requiredBytes, limitBytes int64, secrets map[string]string) (int64, bool, error) {
	dir, err := c.VolumeDir(id)
	if err != nil {
		return 0, false, err
	}
	var size int64
	err = c.storage.Do(ctx, secrets, func(a client) error {
		attrs, err := a.Attrs(ctx, dir)
		if err != nil {
			if backend.IsNotFound(err) {
				return backend.Errorf(backend.NotFound, "isilon: volume %s does not exist (no directory %s)", id, dir)
			}
			return err
		}
		size, _ = strconv.ParseInt(attrs[attrSize], 10, 64)
		if requiredBytes <= size {
			return c.ensureQuota(ctx, a, dir, size)
		}
		if limitBytes > 0 && requiredBytes > limitBytes {
			return backend.Errorf(backend.OutOfRange, "isilon: required %d bytes is over limit %d", requiredBytes, limitBytes)
		}
		if err := c.ensureQuota(ctx, a, dir, requiredBytes); err != nil {
			return err
		}
		if err := a.SetAttrs(ctx, dir, map[string]string{attrSize: strconv.FormatInt(requiredBytes, 10)}); err != nil {
			return err
		}
		size = requiredBytes
		return nil
	})
	return size, false, err
}

// findSnapshot returns the OneFS snapshot of id; NotFound if absent or of another volume.
func (c *Controller) findSnapshot(ctx context.Context, a array, id volid.Snapshot) (*IsiSnapshot, error) {
	s, err := a.Snapshot(ctx, snapshotName(id.SnapHash))
	if err != nil {
		return nil, err
	}
	if dir, err := c.VolumeDir(id.Volume); err != nil {
		return nil, err
	} else if s == nil || path.Clean(s.Path) != dir {
		return nil, backend.Errorf(backend.NotFound, "isilon: snapshot %s does not exist", id)
	}
	return s, nil
}

// snapshot reports a OneFS snapshot; size is the volume's size when it was taken (OneFS's
// own snapshot size is the snapshot's delta, a few KiB for a fresh one: never a
// size_bytes).
func (c *Controller) snapshot(id volid.Snapshot, s *IsiSnapshot, size int64) *backend.Snapshot {
	return &backend.Snapshot{ID: id, SizeBytes: size, CreatedAt: s.Created, Ready: true}
}

// snapshotSize is the volume's recorded size as the snapshot shows it (the directory's
// attributes are kept in the snapshot), else the volume's hard threshold now, else 0
// (unknown).
func (c *Controller) snapshotSize(ctx context.Context, a array, s *IsiSnapshot, dir string, hard map[string]int64) int64 {
	if attrs, err := a.Attrs(ctx, a.SnapshotDir(s.Name, dir)); err == nil {
		if size, err := strconv.ParseInt(attrs[attrSize], 10, 64); err == nil && size > 0 {
			return size
		}
	}
	if hard != nil {
		return hard[dir]
	}
	if q, err := a.DirQuota(ctx, dir); err == nil && q != nil {
		return q.Hard
	}
	return 0
}

// CreateSnapshot takes a OneFS snapshot csi-snap-<hash> of the volume directory. Snapshot
// names are global on the cluster, so a same-name request for another volume is
// AlreadyExists.
func (c *Controller) CreateSnapshot(ctx context.Context, source volid.Volume, name string, params, secrets map[string]string) (*backend.Snapshot, error) {
	dir, err := c.VolumeDir(source)
	if err != nil {
		return nil, err
	}
	id := volid.Snapshot{Volume: source, SnapHash: volid.Hash(name)}
	snapName := snapshotName(id.SnapHash)
	var out *backend.Snapshot
	err = c.storage.Do(ctx, secrets, func(a client) error {
		attrs, err := a.Attrs(ctx, dir)
		if err != nil {
			if backend.IsNotFound(err) {
				return backend.Errorf(backend.NotFound, "isilon: source volume %s does not exist", source)
			}
			return err
		}
		size, _ := strconv.ParseInt(attrs[attrSize], 10, 64)
		s, err := a.Snapshot(ctx, snapName)
		if err != nil {
			return err
		}
		if s == nil {
			var createErr error
			if s, createErr = a.CreateSnapshot(ctx, snapName, dir); createErr != nil {
				// A name in use answers 409, like a transient conflict: look.
				if s, err = a.Snapshot(ctx, snapName); err != nil {
					return err
				}
				if s == nil {
					return createErr
				}
			}
		}
		if path.Clean(s.Path) != dir {
			return backend.Errorf(backend.AlreadyExists, "isilon: snapshot name %q is already used for another volume (%s)", name, s.Path)
		}
		out = c.snapshot(id, s, size)
		return nil
	})
	return out, err
}

func (c *Controller) DeleteSnapshot(ctx context.Context, id volid.Snapshot, secrets map[string]string) error {
	return c.storage.Do(ctx, secrets, func(a client) error {
		s, err := c.findSnapshot(ctx, a, id)
		if backend.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := a.DeleteSnapshot(ctx, s.ID); err != nil && !backend.IsNotFound(err) {
			return err
		}
		return nil
	})
}

func (c *Controller) GetSnapshot(ctx context.Context, id volid.Snapshot) (*backend.Snapshot, error) {
	var out *backend.Snapshot
	err := c.storage.Do(ctx, nil, func(a client) error {
		s, err := c.findSnapshot(ctx, a, id)
		if err != nil {
			return err
		}
		out = c.snapshot(id, s, c.snapshotSize(ctx, a, s, path.Clean(s.Path), nil))
		return nil
	})
	return out, err
}

// parseSnapshotPath maps a snapshot of <isiPath>/<tenant>/csi-vol-<hash> of any of the
// backend's zones back to its ID.
func (c *Controller) parseSnapshotPath(s IsiSnapshot) (volid.Snapshot, bool) {
	z, ok := zoneOfPath(c.cfg, s.Path)
	rel := strings.TrimPrefix(path.Clean(s.Path), z.isiPath+"/")
	if !ok || !strings.HasPrefix(s.Name, snapshotPrefix) {
		return volid.Snapshot{}, false
	}
	tenant, vol, ok := strings.Cut(rel, "/")
	if !ok || !strings.HasPrefix(vol, volumePrefix) {
		return volid.Snapshot{}, false
	}
	id := volid.Snapshot{
		Volume:   volid.Volume{Backend: c.name, Tenant: tenant, Location: z.key, Hash: strings.TrimPrefix(vol, volumePrefix)},
		SnapHash: strings.TrimPrefix(s.Name, snapshotPrefix),
	}
	return id, id.Validate() == nil
}

func (c *Controller) ListSnapshots(ctx context.Context, source *volid.Volume) ([]*backend.Snapshot, error) {
	var out []*backend.Snapshot
	err := c.storage.Do(ctx, nil, func(a client) error {
		all, err := a.Snapshots(ctx)
		if err != nil {
			return err
		}
		hard, err := hardThresholds(ctx, a)
		if err != nil {
			return err
		}
		for _, s := range all {
			id, ok := c.parseSnapshotPath(s)
			if !ok || (source != nil && id.Volume != *source) {
				continue
			}
			out = append(out, c.snapshot(id, &s, c.snapshotSize(ctx, a, &s, path.Clean(s.Path), hard)))
		}
		return nil
	})
	return out, err
}

// Capacity is the cluster's ifs.bytes.avail.
func (c *Controller) Capacity(ctx context.Context, params map[string]string) (int64, error) {
	var avail int64
	err := c.storage.Do(ctx, nil, func(a client) error {
		var err error
		avail, err = a.AvailableBytes(ctx)
		return err
	})
	return avail, err
}

// Probe checks the Platform API version within a short timeout. Without a credentials file
// (secrets-only deployments) it can only check that the endpoint accepts connections.
func (c *Controller) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(probeTimeout, c.conn.timeout))
	defer cancel()
	if c.cfg.CredentialsFile == "" {
		return c.dialEndpoint(ctx)
	}
	return c.storage.Do(ctx, nil, func(a client) error { return a.Version(ctx) })
}

func (c *Controller) dialEndpoint(ctx context.Context) error {
	u, err := url.Parse(c.cfg.Endpoint)
	if err != nil || u.Host == "" {
		return backend.Errorf(backend.InvalidArgument, "isilon.endpoint %q is not a URL such as https://host:8080", c.cfg.Endpoint)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "8080")
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return backend.Errorf(backend.Unavailable, "isilon %s: cannot reach the Platform API: %v", c.cfg.Endpoint, err)
	}
	return conn.Close()
}

// hardThresholds maps each directory quota's path to its hard threshold: the sizes of all
// volumes in one call instead of one quota lookup per volume.
func hardThresholds(ctx context.Context, a array) (map[string]int64, error) {
	quotas, err := a.DirQuotas(ctx)
	if err != nil {
		return nil, err
	}
	hard := make(map[string]int64, len(quotas))
	for _, q := range quotas {
		hard[path.Clean(q.Path)] = q.Hard
	}
	return hard, nil
}

// SnapshotPath is where an NFS client of an export of a volume's directory reads the
// volume's snapshot id: OneFS shows every snapshot of a directory in its .snapshot.
func SnapshotPath(exportPath string, id volid.Snapshot) string {
	return path.Join(exportPath, ".snapshot", snapshotName(id.SnapHash))
}
