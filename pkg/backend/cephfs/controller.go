package cephfs

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Controller provisions CephFS subvolumes: one subvolume group per tenant, one subvolume per
// volume with its size as quota.
type Controller struct {
	name   string
	cfg    *Config
	prefix string
	// storage opens a request's session on the pooled connection for its secrets (config
	// credentials when there are none).
	storage backend.Storage[commander]
	// clonePoll is how often CreateVolume asks a running clone for its state.
	clonePoll time.Duration

	mu sync.Mutex
	// fsIDs caches filesystem name -> fscid; filesystems are not renamed.
	fsIDs map[string]string
	// groups remembers the subvolume groups made and isolated (key fs/group, value the
	// group's data pool), saving a mgr command per create; identities the tenant identities
	// made (key fs/group), saving the monitors two commands per create. A tenant's last
	// delete forgets its identity, not its group, which stays.
	groups, identities tenantSetup
	// listings are the directory listings read, kept while their directories are unchanged.
	listings *dirListings
}

var (
	_ backend.Controller = (*Controller)(nil)
	_ backend.Publisher  = (*Controller)(nil)
)

// NewController builds the controller side of a cephfs backend. It does not contact Ceph.
func NewController(cfg *config.Backend, conns *ceph.Connections) (*Controller, error) {
	fs, err := config.SectionAs[*Config](cfg)
	if err != nil {
		return nil, fmt.Errorf("cephfs backend: %w", err)
	}
	if conns == nil {
		return nil, fmt.Errorf("cephfs backend %q: no connection pool", cfg.Name)
	}
	if _, err := parseParams(nil, fs); err != nil {
		return nil, fmt.Errorf("cephfs backend %q defaults: %w", cfg.Name, err)
	}
	connect := func(ctx context.Context, secrets map[string]string) (commander, error) {
		cred, err := ceph.CredentialsFor(fs.Credentials, secrets)
		if err != nil {
			return nil, err
		}
		return conns.Conn(ctx, cfg.Name, fs.Cluster, cred)
	}
	return newController(cfg.Name, fs, connect), nil
}

func newController(name string, cfg *Config, connect func(context.Context, map[string]string) (commander, error)) *Controller {
	prefix := cfg.SubvolumeGroupPrefix
	if prefix == "" {
		prefix = DefaultSubvolumeGroupPrefix
	}
	monitors := strings.Join(cfg.Monitors, ",")
	storage := backend.Storage[commander]{
		Name:    fmt.Sprintf("Ceph cluster %s (monitors %s)", cfg.ClusterID, monitors),
		Address: monitors,
		Connect: connect,
	}
	return &Controller{
		name: name, cfg: cfg, prefix: prefix, storage: storage, clonePoll: 500 * time.Millisecond,
		fsIDs: map[string]string{}, listings: newDirListings(maxListedNames),
	}
}

func (c *Controller) Name() string            { return c.name }
func (c *Controller) Kind() string            { return backend.KindCephFS }
func (c *Controller) ParameterKeys() []string { return append([]string(nil), parameterKeys...) }
func (c *Controller) Close()                  {}

// session is one request's connection; every call on it honours the request's ctx.
type session struct {
	*backend.Session[commander]
	ctx  context.Context
	conn commander
	fsa  *admin.FSAdmin
}

func (c *Controller) session(ctx context.Context, secrets map[string]string) (*session, error) {
	ss, err := c.storage.Open(ctx, secrets)
	if err != nil {
		return nil, err
	}
	return &session{Session: ss, ctx: ctx, conn: ss.Handle, fsa: admin.NewFromConn(ss.Handle)}, nil
}

// do runs one blocking Ceph call under the request's deadline and classifies its failure.
func (s *session) do(what string, fn func() error) error {
	return s.Do(func() error { return classify(fn(), what) })
}

// fsID returns the fscid of filesystem name, the location token of its volume IDs.
func (c *Controller) fsID(s *session, name string) (string, error) {
	c.mu.Lock()
	id, ok := c.fsIDs[name]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	if err := c.refreshFS(s); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.fsIDs[name]; ok {
		return id, nil
	}
	names := make([]string, 0, len(c.fsIDs))
	for n := range c.fsIDs {
		names = append(names, n)
	}
	sort.Strings(names)
	return "", backend.Errorf(backend.InvalidArgument, "CephFS filesystem %q does not exist on cluster %s; existing filesystems: %v (set StorageClass parameter %q or the backend's fsName)",
		name, c.cfg.ClusterID, names, ParamFSName)
}

// filesystems copies the known filesystems: name to ID (a volume ID's location).
func (c *Controller) filesystems() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.fsIDs)
}

// fsName maps a volume ID location back to the filesystem name; NotFound if it is gone.
func (c *Controller) fsName(s *session, loc string) (string, error) {
	find := func() (string, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for n, id := range c.fsIDs {
			if id == loc {
				return n, true
			}
		}
		return "", false
	}
	if n, ok := find(); ok {
		return n, nil
	}
	if err := c.refreshFS(s); err != nil {
		return "", err
	}
	if n, ok := find(); ok {
		return n, nil
	}
	return "", backend.Errorf(backend.NotFound, "CephFS filesystem with id %q does not exist on cluster %s", loc, c.cfg.ClusterID)
}

func (c *Controller) refreshFS(s *session) error {
	var idents []admin.VolumeIdent
	if err := s.do("list CephFS filesystems (fs dump)", func() (err error) {
		idents, err = s.fsa.EnumerateVolumes()
		return err
	}); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range idents {
		c.fsIDs[v.Name] = strconv.FormatInt(v.ID, 10)
	}
	return nil
}

// ensureGroup makes the tenant's subvolume group and puts its files in the tenant's
// namespace, once per group while the controller runs; it returns the group's data pool.
func (c *Controller) ensureGroup(s *session, fs, group string) (pool string, err error) {
	return c.groups.do(s.ctx, fs+"/"+group, func() (string, error) {
		// Creating an existing group succeeds, so this is safe to repeat.
		if err := s.do("create subvolume group "+group+" on "+fs, func() error {
			return s.fsa.CreateSubVolumeGroup(fs, group, nil)
		}); err != nil {
			return "", err
		}
		return c.isolateGroup(s, fs, group)
	})
}

func (c *Controller) forgetGroup(fs, group string) { c.groups.forget(fs + "/" + group) }

// ensureTenant makes the tenant's group and identity for a subvolume of ref's group.
func (c *Controller) ensureTenant(s *session, ref volumeRef) error {
	pool, err := c.ensureGroup(s, ref.fs, ref.group)
	if err != nil {
		return err
	}
	return c.ensureTenantIdentity(s, ref.fs, ref.group, pool)
}

// ensureTenantIdentity makes the identity of the tenant of group, with the caps for the
// group and its data pool, once while the controller runs and the tenant has volumes.
func (c *Controller) ensureTenantIdentity(s *session, fs, group, pool string) error {
	_, err := c.identities.do(s.ctx, fs+"/"+group, func() (string, error) {
		_, err := c.ensureIdentity(s, group, pool)
		return "", err
	})
	return err
}

// volumeRef is where one volume lives.
type volumeRef struct {
	fs, group, sub string
	// dir is an adopted plain directory's absolute path (adoptdir.go); group and sub are
	// then empty.
	dir string
}

func (c *Controller) ref(s *session, id volid.Volume) (volumeRef, error) {
	fs, err := c.fsName(s, id.Location)
	if err != nil {
		return volumeRef{}, err
	}
	if id.Object != "" {
		return adoptedRef(fs, id), nil
	}
	return volumeRef{fs: fs, group: groupName(c.prefix, id.Tenant), sub: subvolumeName(id.Hash)}, nil
}

func (r volumeRef) String() string {
	if r.dir != "" {
		return r.fs + ":" + r.dir
	}
	return r.fs + ":" + r.group + "/" + r.sub
}

func (c *Controller) CreateVolume(ctx context.Context, req *backend.VolumeRequest) (*backend.Volume, error) {
	if req.Block {
		return nil, backend.Errorf(backend.InvalidArgument, "cephfs volumes are filesystems; the block access type needs an rbd backend")
	}
	p, err := parseParams(req.Parameters, c.cfg)
	if err != nil {
		return nil, err
	}
	s, err := c.session(ctx, req.Secrets)
	if err != nil {
		return nil, err
	}
	loc, err := c.fsID(s, p.FSName)
	if err != nil {
		return nil, err
	}
	id := req.ID(c.name, loc)
	if err := id.Validate(); err != nil {
		return nil, backend.Errorf(backend.InvalidArgument, "volume ID for %q: %v", req.Name, err)
	}
	ref := volumeRef{fs: p.FSName, group: groupName(c.prefix, req.Tenant), sub: subvolumeName(id.Hash)}
	src, err := c.cloneSource(s, req, loc)
	if err != nil {
		return nil, err
	}

	// A retry finds the subvolume the first attempt made.
	rec, found, err := c.record(s, ref)
	switch {
	case backend.CodeOf(err) == backend.Pending && src != nil:
		// A clone still copying refuses most commands; ask the clone.
		return c.finishClone(s, req, p, id, ref, src)
	case backend.IsNotFound(err):
	case err != nil:
		return nil, err
	case found:
		info, err := c.info(s, ref)
		if err == nil {
			v := c.volumeOf(id, ref, rec, info)
			if err := rec.request().Conflict(req, v.CapacityBytes); err != nil {
				return nil, err
			}
			// Answered as the first attempt was (recordNew): without the path.
			delete(v.Context, CtxRootPath)
			return v, nil
		}
		if !backend.IsNotFound(err) {
			return nil, err
		}
		// Deleted with its snapshots retained (the record stays on its directory): made anew.
	case src != nil:
		// A finished clone not yet recorded: finish it.
		return c.finishClone(s, req, p, id, ref, src)
	default:
		// Created by an attempt that died before recording it (perhaps before its
		// tenant's identity was made): adopt it below.
		if err := c.ensureTenant(s, ref); err != nil {
			return nil, err
		}
		return c.recordNew(s, req, p, id, ref, "")
	}

	pool, err := c.ensureGroup(s, ref.fs, ref.group)
	if err != nil {
		return nil, err
	}
	if src != nil {
		if err := c.ensureTenantIdentity(s, ref.fs, ref.group, pool); err != nil {
			return nil, err
		}
		return c.startClone(s, req, p, id, ref, src)
	}
	// The identity is the monitors' work, the subvolume the mgr's: one waits not for the other.
	identity := make(chan error, 1)
	go func() { identity <- c.ensureTenantIdentity(s, ref.fs, ref.group, pool) }()
	err = c.createSubvolume(s, ref, req.RequiredBytes)
	if ierr := <-identity; err == nil {
		err = ierr
	}
	if err != nil {
		return nil, err
	}
	return c.recordNew(s, req, p, id, ref, "")
}

// createSubvolume makes the subvolume with its quota, in a group ensureGroup made.
func (c *Controller) createSubvolume(s *session, ref volumeRef, bytes int64) error {
	create := func() error {
		return s.do("create subvolume "+ref.String(), func() error {
			return s.fsa.CreateSubVolume(ref.fs, ref.group, ref.sub, &admin.SubVolumeOptions{Size: admin.ByteCount(bytes)})
		})
	}
	err := create()
	if backend.IsNotFound(err) {
		// The group vanished behind our cache (removed by an admin); make it again.
		c.forgetGroup(ref.fs, ref.group)
		if _, err = c.ensureGroup(s, ref.fs, ref.group); err == nil {
			err = create()
		}
	}
	return err
}

// recordNew records the request on a subvolume that holds its final content, sizes it,
// and reports it.
func (c *Controller) recordNew(s *session, req *backend.VolumeRequest, p volumeParams, id volid.Volume, ref volumeRef, source string) (*backend.Volume, error) {
	rr := backend.NewRequestRecord(req)
	rec := volumeRecord{Name: req.Name, Bytes: req.RequiredBytes, Params: p, Source: source, Request: &rr}
	if err := c.writeRecord(s, ref, rec); err != nil {
		return nil, err
	}
	// The volume context names no data directory (rootPath): finding it would cost a readdir
	// of the new subvolume, which makes the MDS take its caps back from the mgr's client
	// while the mgr makes the next subvolumes of a burst (the bench's create figures,
	// issue 15). PublishVolume hands the node the path (publish.go): once per attachment,
	// not once per create.
	v := &backend.Volume{
		ID: id, CapacityBytes: req.RequiredBytes, RequestName: req.Name,
		Context:        volumeContext(c.cfg.ClusterID, ref.group, ref.sub, "", p),
		SourceSnapshot: req.SourceSnapshot, SourceVolume: req.SourceVolume,
	}
	return v, nil
}

// volume reports an existing subvolume.
func (c *Controller) volume(s *session, id volid.Volume, ref volumeRef, rec volumeRecord) (*backend.Volume, error) {
	info, err := c.info(s, ref)
	if err != nil {
		return nil, err
	}
	return c.volumeOf(id, ref, rec, info), nil
}

// volumeOf reports a subvolume from its record and info.
func (c *Controller) volumeOf(id volid.Volume, ref volumeRef, rec volumeRecord, info *admin.SubVolumeInfo) *backend.Volume {
	v := &backend.Volume{
		ID: id, CapacityBytes: quotaBytes(info), RequestName: rec.Name,
		Context: volumeContext(c.cfg.ClusterID, ref.group, ref.sub, info.Path, rec.Params),
	}
	if rec.Source != "" {
		if sid, err := volid.ParseSnapshot(rec.Source); err == nil {
			v.SourceSnapshot = &sid
		} else if vid, err := volid.ParseVolume(rec.Source); err == nil {
			v.SourceVolume = &vid
		}
	}
	return v
}

func (c *Controller) info(s *session, ref volumeRef) (*admin.SubVolumeInfo, error) {
	var info *admin.SubVolumeInfo
	err := s.do("get subvolume "+ref.String(), func() (err error) {
		info, err = s.fsa.SubVolumeInfo(ref.fs, ref.group, ref.sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	if info.State == admin.StateSnapRetained {
		return nil, backend.Errorf(backend.NotFound, "subvolume %s was deleted; only its snapshots remain", ref)
	}
	return info, nil
}

func quotaBytes(info *admin.SubVolumeInfo) int64 {
	if bc, ok := info.BytesQuota.(admin.ByteCount); ok {
		return int64(bc)
	}
	return 0
}

func (c *Controller) DeleteVolume(ctx context.Context, id volid.Volume, secrets map[string]string) error {
	if isDirObject(id.Object) {
		return c.releaseDir(ctx, id, secrets)
	}
	s, err := c.session(ctx, secrets)
	if err != nil {
		return err
	}
	ref, err := c.ref(s, id)
	if backend.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// An unrecorded clone (its controller died before recording it) may have left its
	// temporary snapshot on its source; a recorded one lost it before it was recorded.
	// The record is an xattr read through the MDS, so this costs the mgr nothing.
	_, found, err := c.record(s, ref)
	switch {
	case err == nil && !found:
		if err := c.dropOwnCloneSnapshot(s, ref, id); err != nil {
			return err
		}
	case err != nil && !backend.IsNotFound(err) && backend.CodeOf(err) != backend.Pending:
		return err
	}
	// Without snapshots, one mgr command. Whether the tenant keeps another subvolume (else
	// its identity goes) is read from the group meanwhile: after the remove, that readdir
	// added 4 ms to a delete of 18 ms (the mgr's 13).
	_, tenantGroup := tenantOfGroup(c.prefix, ref.group)
	beside := make(chan subvolumesBeside, 1)
	if tenantGroup {
		go func() { beside <- c.subvolumeBeside(s, ref, ref.sub) }()
	}
	err = s.do("delete subvolume "+ref.String(), func() error {
		return s.fsa.RemoveSubVolume(ref.fs, ref.group, ref.sub)
	})
	switch removed := err == nil || backend.IsNotFound(err); {
	case removed && !tenantGroup:
		return nil // adopted in a group of its own: no tenant identity goes with it
	case removed:
		if b := <-beside; b.err != nil || b.left {
			return b.err
		}
		return c.dropIdentity(s, ref)
	}
	// With snapshots Ceph answers ENOTEMPTY: temporary clone snapshots whose clone is
	// finished or gone go first (else Ceph would keep the volume for ever in state
	// snapshot-retained), then the volume is removed keeping the others, which outlive
	// their volume and whose clones keep working.
	if isErrno(err, syscall.ENOTEMPTY) {
		if err := c.dropCloneSnapshots(s, ref); err != nil && !backend.IsNotFound(err) {
			return err
		}
		err = s.do("delete subvolume keeping its snapshots "+ref.String(), func() error {
			return s.fsa.RemoveSubVolumeWithFlags(ref.fs, ref.group, ref.sub, admin.SubVolRmFlags{RetainSnapshots: true})
		})
	}
	switch {
	case err == nil, backend.IsNotFound(err):
		return c.dropIdentityIfLast(s, ref)
	case backend.CodeOf(err) != backend.Pending:
		return err
	}
	// Busy: a clone of ours still copying (or failed), or a volume with clones in
	// progress from its snapshots.
	var st *admin.CloneStatus
	if cerr := s.do("get clone status of "+ref.String(), func() (err error) {
		st, err = s.fsa.CloneStatus(ref.fs, ref.group, ref.sub)
		return err
	}); cerr == nil && st.State != admin.CloneComplete {
		return c.deleteUnfinishedClone(s, ref, id, st)
	} else if cerr != nil && !notCloneErr(cerr) {
		return cerr
	}
	return backend.Errorf(backend.Pending, "volume %s has clones in progress from its snapshots; DeleteVolume is retried once they complete (%v)", id, err)
}

// deleteUnfinishedClone cancels a clone still copying and removes it and its temporary
// source snapshot.
func (c *Controller) deleteUnfinishedClone(s *session, ref volumeRef, id volid.Volume, st *admin.CloneStatus) error {
	if st.State == admin.ClonePending || st.State == admin.CloneInProgress {
		if err := s.do("cancel clone "+ref.String(), func() error {
			return s.fsa.CancelClone(ref.fs, ref.group, ref.sub)
		}); err != nil && !backend.IsNotFound(err) && backend.CodeOf(err) != backend.InvalidArgument {
			return err
		}
	}
	err := s.do("delete cancelled clone "+ref.String(), func() error {
		return s.fsa.RemoveSubVolumeWithFlags(ref.fs, ref.group, ref.sub, admin.SubVolRmFlags{Force: true, RetainSnapshots: true})
	})
	if err != nil && !backend.IsNotFound(err) {
		return err
	}
	if st.Source.Snapshot == cloneSnapName(id.Hash) {
		_ = s.do("delete temporary clone snapshot", func() error {
			return s.fsa.RemoveSubVolumeSnapshot(st.Source.Volume, st.Source.Group, st.Source.SubVolume, st.Source.Snapshot)
		})
	}
	return nil
}

func (c *Controller) GetVolume(ctx context.Context, id volid.Volume, secrets map[string]string) (*backend.Volume, error) {
	if isDirObject(id.Object) {
		return c.getDir(ctx, id, secrets)
	}
	s, err := c.session(ctx, secrets)
	if err != nil {
		return nil, err
	}
	ref, err := c.ref(s, id)
	if err != nil {
		return nil, err
	}
	rec, _, err := c.record(s, ref)
	if backend.CodeOf(err) == backend.Pending {
		return nil, backend.Errorf(backend.Pending, "volume %s is a clone still copying; retry", id)
	}
	if err != nil {
		return nil, err
	}
	if rec.Params.FSName == "" {
		rec.Params = volumeParams{FSName: ref.fs, Mounter: c.cfg.Mounter}
		if rec.Params.Mounter == "" {
			rec.Params.Mounter = MounterAuto
		}
	}
	return c.volume(s, id, ref, rec)
}

func (c *Controller) ListVolumes(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	s, err := c.session(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.refreshFS(s); err != nil {
		return nil, err
	}
	out, err := c.adoptedVolumes(s, tenant)
	if err != nil {
		return nil, err
	}
	subs, err := c.subvolumesOf(s, tenant)
	if err != nil {
		return nil, err
	}
	vols, err := readEach(subs, func(id volid.Volume, ref volumeRef) (*backend.Volume, error) { return c.listedVolume(s, id, ref) })
	return append(out, vols...), err
}

// placedSubvolume is one of shiphold's subvolumes, found in its tenant's group.
type placedSubvolume struct {
	id  volid.Volume
	ref volumeRef
}

// subvolumesOf lists shiphold's subvolumes of tenant ("" for every tenant) on every
// filesystem, in ID order. It reads the group directories through the MDS: the mgr's
// `subvolumegroup ls` and `subvolume ls` read the same directories behind every other
// command of its volumes module's one thread (a reading of 1,000 tenants sent it 1,000).
func (c *Controller) subvolumesOf(s *session, tenant string) ([]placedSubvolume, error) {
	var places []groupPlace
	if tenant == "" {
		var err error
		if places, err = c.groupsFrom(s, volid.Volume{}); err != nil {
			return nil, err
		}
	} else {
		for fs, loc := range c.filesystems() {
			places = append(places, groupPlace{ref: volumeRef{fs: fs, group: groupName(c.prefix, tenant)}, tenant: tenant, loc: loc, key: groupKey(tenant, loc)})
		}
		sort.Slice(places, func(i, j int) bool { return places[i].key < places[j].key })
	}
	var out []placedSubvolume
	for _, pl := range places {
		hashes, err := c.subvolumeHashes(s, pl.ref)
		if err != nil {
			return nil, err
		}
		out = append(out, pl.subvolumes(c.name, hashes)...)
	}
	return out, nil
}

// readEach reads subs with read, pageReaders at a time, and answers what it read in
// order, leaving out the nil ones; or the first error in that order.
func readEach(subs []placedSubvolume, read func(volid.Volume, volumeRef) (*backend.Volume, error)) ([]*backend.Volume, error) {
	return backend.ReadEach(len(subs), pageReaders, func(i int) (*backend.Volume, error) {
		return read(subs[i].id, subs[i].ref)
	})
}

func (c *Controller) ExpandVolume(ctx context.Context, id volid.Volume, requiredBytes, limitBytes int64, secrets map[string]string) (int64, bool, error) {
	if isDirObject(id.Object) {
		return c.expandDir(ctx, id, requiredBytes, secrets)
	}
	s, err := c.session(ctx, secrets)
	if err != nil {
		return 0, false, err
	}
	ref, err := c.ref(s, id)
	if err != nil {
		return 0, false, err
	}
	info, err := c.info(s, ref)
	if err != nil {
		return 0, false, err
	}
	if cur := quotaBytes(info); cur >= requiredBytes {
		return cur, false, nil
	}
	if err := s.do("resize subvolume "+ref.String(), func() error {
		return resizeSubvolume(s.conn, ref.fs, ref.group, ref.sub, requiredBytes, true)
	}); err != nil {
		return 0, false, err
	}
	// The resize answer is not trusted (see resizeSubvolume): read the quota back.
	if info, err = c.info(s, ref); err != nil {
		return 0, false, err
	}
	got := quotaBytes(info)
	if got < requiredBytes {
		return 0, false, backend.Errorf(backend.Internal, "resize of %s to %d bytes left its quota at %d bytes", ref, requiredBytes, got)
	}
	// The quota applies to mounted clients at once: no node step.
	return got, false, nil
}

func (c *Controller) Capacity(ctx context.Context, params map[string]string) (int64, error) {
	p, err := parseParams(filterParams(params), c.cfg)
	if err != nil {
		return 0, err
	}
	s, err := c.session(ctx, nil)
	if err != nil {
		return 0, err
	}
	var filesystems []admin.FSPoolInfo
	if err := s.do("list CephFS filesystems", func() (err error) {
		filesystems, err = s.fsa.ListFileSystems()
		return err
	}); err != nil {
		return 0, err
	}
	var pools []string
	for _, f := range filesystems {
		if f.Name == p.FSName {
			pools = f.DataPools
		}
	}
	if pools == nil {
		return 0, backend.Errorf(backend.InvalidArgument, "CephFS filesystem %q does not exist on cluster %s", p.FSName, c.cfg.ClusterID)
	}
	var avail map[string]int64
	if err := s.do("read pool usage (df)", func() (err error) {
		avail, err = ceph.PoolsAvailable(s.conn)
		return err
	}); err != nil {
		return 0, err
	}
	var total int64
	for _, pool := range pools {
		total += avail[pool]
	}
	return total, nil
}

// filterParams keeps the parameters of this kind (Capacity gets the whole class).
func filterParams(params map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range parameterKeys {
		if v, ok := params[k]; ok {
			out[k] = v
		}
	}
	return out
}

func (c *Controller) Probe(ctx context.Context) error {
	s, err := c.session(ctx, nil)
	if err != nil {
		return err
	}
	var vols []string
	if err := s.do("list CephFS volumes through the mgr", func() (err error) {
		vols, err = s.fsa.ListVolumes()
		return err
	}); err != nil {
		return err
	}
	for _, v := range vols {
		if v == c.cfg.FSName {
			return nil
		}
	}
	return backend.Errorf(backend.Unavailable, "CephFS filesystem %q is not among the cluster's volumes %v", c.cfg.FSName, vols)
}

// notCloneErr reports whether a clone-status failure means "this subvolume is no clone".
func notCloneErr(err error) bool {
	return isErrno(err, syscall.EINVAL) || isErrno(err, syscall.ENOTSUP) || strings.Contains(fmt.Sprint(err), "not allowed on subvolume")
}
