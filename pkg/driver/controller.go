package driver

import (
	"context"
	"fmt"
	"sort"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

var controllerCaps = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
	// Isilon grants read-only export access; Ceph backends record the mode per node.
	csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	csi.ControllerServiceCapability_RPC_GET_VOLUME,
	csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
}

func (d *ControllerServer) ControllerGetCapabilities(ctx context.Context, req *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	caps := make([]*csi.ControllerServiceCapability, 0, len(controllerCaps))
	for _, c := range controllerCaps {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *ControllerServer) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume name is required")
	}
	access, err := summarize(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	params := req.GetParameters()
	backendName := params[backend.ParamBackend]
	if backendName == "" {
		return nil, status.Errorf(codes.InvalidArgument, "StorageClass parameter %q is required; configured backends: %v", backend.ParamBackend, d.backendNames())
	}
	c, err := d.controller(backendName)
	if err != nil {
		return nil, err
	}
	if err := checkParameters(params, c); err != nil {
		return nil, err
	}
	if err := d.kinds.supports(c.Kind(), access); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "backend %q: %v", backendName, err)
	}
	tenant, err := tenantOf(params)
	if err != nil {
		return nil, err
	}
	topology, err := d.accessibleTopology(backendName, req.GetAccessibilityRequirements())
	if err != nil {
		return nil, err
	}
	required, limit, err := capacityRange(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	vreq := &backend.VolumeRequest{
		Name: req.GetName(), Tenant: tenant, RequiredBytes: required, LimitBytes: limit,
		Block: access.block, MultiNode: access.multiNode,
		Parameters: params, Secrets: req.GetSecrets(),
	}
	if err := d.resolveSource(req.GetVolumeContentSource(), backendName, vreq); err != nil {
		return nil, err
	}

	ctx, release, err := d.inflight.acquire(ctx, "create/"+req.GetName())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := checkSourceSize(ctx, c, vreq); err != nil {
		return nil, err
	}
	quota, err := d.reserveQuota(ctx, c, vreq)
	if err != nil {
		return nil, err
	}
	vol, err := c.CreateVolume(ctx, vreq)
	if err != nil {
		settle(quota, 0, err)
		return nil, toStatus(err)
	}
	settle(quota, vol.CapacityBytes, nil)
	if limit > 0 && vol.CapacityBytes > limit {
		// Refused after the fact, the volume would be one the CO never learns of: take it back.
		if err := c.DeleteVolume(ctx, vol.ID, req.GetSecrets()); err != nil {
			klog.Errorf("CreateVolume %q: volume %s is over limit_bytes and could not be removed: %v", req.GetName(), vol.ID, err)
		}
		return nil, status.Errorf(codes.OutOfRange, "backend %q allocates %d bytes, over limit_bytes %d", backendName, vol.CapacityBytes, limit)
	}
	out := csiVolume(vol)
	out.AccessibleTopology = topology
	return &csi.CreateVolumeResponse{Volume: out}, nil
}

// checkSourceSize refuses a content source larger than limit_bytes before anything is
// created: a clone is at least as large as its source. A missing source is NOT_FOUND.
func checkSourceSize(ctx context.Context, c backend.Controller, vreq *backend.VolumeRequest) error {
	if vreq.LimitBytes == 0 {
		return nil
	}
	var size int64
	switch {
	case vreq.SourceSnapshot != nil:
		s, err := c.GetSnapshot(ctx, *vreq.SourceSnapshot)
		if err != nil {
			return toStatus(err)
		}
		size = s.SizeBytes
	case vreq.SourceVolume != nil:
		v, err := c.GetVolume(ctx, *vreq.SourceVolume, vreq.Secrets)
		if err != nil {
			return toStatus(err)
		}
		size = v.CapacityBytes
	}
	if size > vreq.LimitBytes {
		return status.Errorf(codes.OutOfRange, "content source is %d bytes, over limit_bytes %d; a volume cannot be smaller than its source", size, vreq.LimitBytes)
	}
	return nil
}

func (d *ControllerServer) resolveSource(src *csi.VolumeContentSource, backendName string, vreq *backend.VolumeRequest) error {
	if src == nil {
		return nil
	}
	switch {
	case src.GetSnapshot() != nil:
		id := src.GetSnapshot().GetSnapshotId()
		s, err := volid.ParseSnapshot(id)
		if err != nil {
			return status.Errorf(codes.NotFound, "source snapshot %q does not exist: %v", id, err)
		}
		if s.Backend != backendName {
			return status.Errorf(codes.InvalidArgument, "source snapshot is on backend %q, the volume is requested on %q; use shipholdctl migrate to move data between backends", s.Backend, backendName)
		}
		if err := sameTenant(s.Volume, vreq.Tenant); err != nil {
			return err
		}
		vreq.SourceSnapshot = &s
	case src.GetVolume() != nil:
		id := src.GetVolume().GetVolumeId()
		v, err := volid.ParseVolume(id)
		if err != nil {
			return status.Errorf(codes.NotFound, "source volume %q does not exist: %v", id, err)
		}
		if v.Backend != backendName {
			return status.Errorf(codes.InvalidArgument, "source volume is on backend %q, the clone is requested on %q; use shipholdctl migrate to move data between backends", v.Backend, backendName)
		}
		if err := sameTenant(v, vreq.Tenant); err != nil {
			return err
		}
		vreq.SourceVolume = &v
	default:
		return status.Error(codes.InvalidArgument, "volume content source must be a snapshot or a volume")
	}
	return nil
}

// sameTenant keeps one tenant's data out of another's volumes, on every backend. It is
// decided from the IDs alone, so it says nothing about whether the source exists.
func sameTenant(src volid.Volume, tenant string) error {
	if src.Tenant != tenant {
		return status.Errorf(codes.InvalidArgument, "content source %s belongs to tenant %q, the volume to tenant %q; a volume can only be made from its own tenant's volumes and snapshots", src, src.Tenant, tenant)
	}
	return nil
}

func csiVolume(v *backend.Volume) *csi.Volume {
	out := &csi.Volume{VolumeId: v.ID.String(), CapacityBytes: v.CapacityBytes, VolumeContext: v.Context}
	switch {
	case v.SourceSnapshot != nil:
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.SourceSnapshot.String()}}}
	case v.SourceVolume != nil:
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.SourceVolume.String()}}}
	}
	return out
}

func (d *ControllerServer) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	id, err := volid.ParseVolume(req.GetVolumeId())
	if err != nil {
		// Not an ID shiphold ever issued, so no volume of ours exists under it.
		klog.FromContext(ctx).Info("Not a shiphold volume ID; nothing to delete", "reason", err.Error())
		return &csi.DeleteVolumeResponse{}, nil
	}
	c, ok := d.opts.Controllers[id.Backend]
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is on backend %q, which is not in the driver config; restore the backend to delete it", id, id.Backend)
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := c.DeleteVolume(ctx, id, req.GetSecrets()); err != nil && !backend.IsNotFound(err) {
		return nil, toStatus(err)
	}
	d.ledger.Forget(id)
	return &csi.DeleteVolumeResponse{}, nil
}

// volume parses an ID that must name an existing volume and returns its backend.
func (d *ControllerServer) volume(ctx context.Context, rawID string, secrets map[string]string) (volid.Volume, backend.Controller, *backend.Volume, error) {
	id, c, err := d.controllerOf(rawID)
	if err != nil {
		return id, nil, nil, err
	}
	v, err := c.GetVolume(ctx, id, secrets)
	if err != nil {
		return id, c, nil, toStatus(err)
	}
	return id, c, v, nil
}

// controllerOf parses a volume ID and returns its backend, without reading the volume.
func (d *ControllerServer) controllerOf(rawID string) (volid.Volume, backend.Controller, error) {
	id, err := parseVolumeID(rawID)
	if err != nil {
		return id, nil, err
	}
	c, ok := d.opts.Controllers[id.Backend]
	if !ok {
		return id, nil, status.Errorf(codes.NotFound, "volume %s is on backend %q, which is not in the driver config", id, id.Backend)
	}
	return id, c, nil
}

func (d *ControllerServer) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	_, _, v, err := d.volume(ctx, req.GetVolumeId(), nil)
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeResponse{Volume: csiVolume(v), Status: &csi.ControllerGetVolumeResponse_VolumeStatus{}}, nil
}

func (d *ControllerServer) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetNodeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "node ID is required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	access, err := summarize([]*csi.VolumeCapability{req.GetVolumeCapability()})
	if err != nil {
		return nil, err
	}
	// A Publisher finds the volume itself (NotFound when it is gone): reading it first
	// would cost every publish a round trip (on Isilon several PAPI requests).
	id, c, err := d.controllerOf(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if _, ok := c.(backend.Publisher); !ok {
		if _, err := c.GetVolume(ctx, id, req.GetSecrets()); err != nil {
			return nil, toStatus(err)
		}
	}
	node, err := parseNodeID(req.GetNodeId())
	if err != nil {
		return nil, err
	}
	if err := d.kinds.supports(c.Kind(), access); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "volume %s: %v", id, err)
	}
	readOnly := publishReadOnly(req)
	p, ok := c.(backend.Publisher)
	if !ok {
		return &csi.ControllerPublishVolumeResponse{PublishContext: withReadOnly(nil, readOnly)}, nil
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	grant := backend.PublishAccess{ReadOnly: readOnly, SingleNode: !access.multiNode}
	pc, err := p.PublishVolume(ctx, id, node, grant, req.GetVolumeContext(), req.GetSecrets())
	if err != nil {
		return nil, toStatus(err)
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: withReadOnly(pc, readOnly)}, nil
}

// publishReadOnly: a reader-only access mode is a read-only grant whatever the flag says
// (csi-attacher sets Readonly only from the PV's spec.csi.readOnly, never for a ROX PVC).
func publishReadOnly(req *csi.ControllerPublishVolumeRequest) bool {
	switch req.GetVolumeCapability().GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return req.GetReadonly()
}

// withReadOnly tells the node, through the publish context, that the volume was published
// read-only: NodeStageVolume carries no such flag.
func withReadOnly(pc map[string]string, readOnly bool) map[string]string {
	if !readOnly {
		return pc
	}
	if pc == nil {
		pc = map[string]string{}
	}
	pc[backend.PublishContextReadOnly] = "true"
	return pc
}

func (d *ControllerServer) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	id, err := volid.ParseVolume(req.GetVolumeId())
	if err != nil {
		// Spec: a volume that does not exist is already unpublished.
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	c, ok := d.opts.Controllers[id.Backend]
	if !ok {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	p, ok := c.(backend.Publisher)
	if !ok {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	var node backend.Node
	if req.GetNodeId() != "" {
		if node, err = parseNodeID(req.GetNodeId()); err != nil {
			return &csi.ControllerUnpublishVolumeResponse{}, nil
		}
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := p.UnpublishVolume(ctx, id, node, req.GetSecrets()); err != nil && !backend.IsNotFound(err) {
		return nil, toStatus(err)
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

func (d *ControllerServer) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	access, err := summarize(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	_, c, _, err := d.volume(ctx, req.GetVolumeId(), req.GetSecrets())
	if err != nil {
		return nil, err
	}
	if err := d.kinds.supports(c.Kind(), access); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (d *ControllerServer) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	token := req.GetStartingToken()
	if token != "" && !isVolumeID(token) {
		return nil, status.Errorf(codes.Aborted, "starting_token %q is not valid for this listing; start again without a token", token)
	}
	page, next, err := d.volumePage(ctx, token, int(req.GetMaxEntries()))
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, v := range page {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: csiVolume(v)})
	}
	return resp, nil
}

// paginate pages a sorted list of IDs. The token is the last ID of the previous page, so
// volumes created or deleted between pages neither shift nor repeat entries; a token that
// is not an ID of the listed kind is ABORTED, as the spec asks for an invalid token.
func paginate(ids []string, token string, max int32, validToken func(string) bool) ([]string, string, error) {
	sort.Strings(ids)
	start := 0
	if token != "" {
		if !validToken(token) {
			return nil, "", status.Errorf(codes.Aborted, "starting_token %q is not valid for this listing; start again without a token", token)
		}
		start = sort.SearchStrings(ids, token)
		if start < len(ids) && ids[start] == token {
			start++
		}
	}
	end := len(ids)
	if max > 0 && start+int(max) < end {
		end = start + int(max)
	}
	next := ""
	if end < len(ids) && end > start {
		next = ids[end-1]
	}
	return ids[start:end], next, nil
}

func isVolumeID(s string) bool {
	_, err := volid.ParseVolume(s)
	return err == nil
}

func isSnapshotID(s string) bool {
	_, err := volid.ParseSnapshot(s)
	return err == nil
}

func (d *ControllerServer) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	params := req.GetParameters()
	names := d.backendNames()
	if b := params[backend.ParamBackend]; b != "" {
		c, err := d.controller(b)
		if err != nil {
			return nil, err
		}
		if err := checkParameters(params, c); err != nil {
			return nil, err
		}
		names = []string{b}
	}
	if len(req.GetVolumeCapabilities()) > 0 {
		if _, err := summarize(req.GetVolumeCapabilities()); err != nil {
			return nil, err
		}
	}
	var total int64
	for _, n := range names {
		bytes, err := d.capacityOf(ctx, n, params)
		if err != nil {
			return nil, toStatus(err)
		}
		total += bytes
	}
	return &csi.GetCapacityResponse{AvailableCapacity: total}, nil
}

func (d *ControllerServer) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity range is required")
	}
	required, limit, err := capacityRange(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	id, err := parseVolumeID(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	c, ok := d.opts.Controllers[id.Backend]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s is on backend %q, which is not in the driver config", id, id.Backend)
	}
	if vc := req.GetVolumeCapability(); vc != nil {
		access, err := summarize([]*csi.VolumeCapability{vc})
		if err != nil {
			return nil, err
		}
		if err := d.kinds.supports(c.Kind(), access); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "volume %s: %v", id, err)
		}
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	quota, err := d.reserveGrowth(ctx, c, id, required, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	size, nodeExpand, err := c.ExpandVolume(ctx, id, required, limit, req.GetSecrets())
	settle(quota, size, err)
	if err != nil {
		return nil, toStatus(err)
	}
	// A raw block volume needs the node too: a loop device over rbd-fuse keeps its old size
	// until NodeExpandVolume refreshes it (krbd and rbd-nbd follow by themselves).
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: nodeExpand}, nil
}

func (d *ControllerServer) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot name is required")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume ID is required")
	}
	src, err := parseVolumeID(req.GetSourceVolumeId())
	if err != nil {
		return nil, err
	}
	c, ok := d.opts.Controllers[src.Backend]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "source volume %s is on backend %q, which is not in the driver config", src, src.Backend)
	}
	ctx, release, err := d.inflight.acquire(ctx, "snapshot/"+req.GetName(), src.String())
	if err != nil {
		return nil, err
	}
	defer release()
	snap, err := c.CreateSnapshot(ctx, src, req.GetName(), req.GetParameters(), req.GetSecrets())
	if err != nil {
		return nil, toStatus(err)
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(snap)}, nil
}

func csiSnapshot(s *backend.Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId: s.ID.String(), SourceVolumeId: s.ID.Volume.String(), SizeBytes: s.SizeBytes,
		CreationTime: timestamppb.New(s.CreatedAt), ReadyToUse: s.Ready,
	}
}

func (d *ControllerServer) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot ID is required")
	}
	id, err := volid.ParseSnapshot(req.GetSnapshotId())
	if err != nil {
		klog.FromContext(ctx).Info("Not a shiphold snapshot ID; nothing to delete", "reason", err.Error())
		return &csi.DeleteSnapshotResponse{}, nil
	}
	c, ok := d.opts.Controllers[id.Backend]
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "snapshot %s is on backend %q, which is not in the driver config; restore the backend to delete it", id, id.Backend)
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := c.DeleteSnapshot(ctx, id, req.GetSecrets()); err != nil && !backend.IsNotFound(err) {
		return nil, toStatus(err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *ControllerServer) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot ID is required")
	}
	id, err := volid.ParseSnapshot(req.GetSnapshotId())
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "snapshot %q does not exist: not a shiphold snapshot ID (%v)", req.GetSnapshotId(), err)
	}
	c, ok := d.opts.Controllers[id.Backend]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "snapshot %s is on backend %q, which is not in the driver config", id, id.Backend)
	}
	s, err := c.GetSnapshot(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &csi.GetSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
}

func (d *ControllerServer) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	var snaps []*backend.Snapshot
	switch {
	case req.GetSnapshotId() != "":
		id, err := volid.ParseSnapshot(req.GetSnapshotId())
		if err != nil {
			return &csi.ListSnapshotsResponse{}, nil
		}
		c, ok := d.opts.Controllers[id.Backend]
		if !ok {
			return &csi.ListSnapshotsResponse{}, nil
		}
		s, err := c.GetSnapshot(ctx, id)
		if backend.IsNotFound(err) {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if err != nil {
			return nil, toStatus(err)
		}
		if src := req.GetSourceVolumeId(); src != "" && src != s.ID.Volume.String() {
			return &csi.ListSnapshotsResponse{}, nil
		}
		snaps = []*backend.Snapshot{s}
	case req.GetSourceVolumeId() != "":
		src, err := volid.ParseVolume(req.GetSourceVolumeId())
		if err != nil {
			return &csi.ListSnapshotsResponse{}, nil
		}
		c, ok := d.opts.Controllers[src.Backend]
		if !ok {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if snaps, err = c.ListSnapshots(ctx, &src); err != nil && !backend.IsNotFound(err) {
			return nil, toStatus(err)
		}
	default:
		for _, name := range d.backendNames() {
			s, err := d.opts.Controllers[name].ListSnapshots(ctx, nil)
			if err != nil {
				return nil, toStatusWhile(err, fmt.Sprintf("listing snapshots on backend %q", name))
			}
			snaps = append(snaps, s...)
		}
	}
	ids := make([]string, len(snaps))
	byID := make(map[string]*backend.Snapshot, len(snaps))
	for i, s := range snaps {
		ids[i] = s.ID.String()
		byID[ids[i]] = s
	}
	page, next, err := paginate(ids, req.GetStartingToken(), req.GetMaxEntries(), isSnapshotID)
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, id := range page {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(byID[id])})
	}
	return resp, nil
}
