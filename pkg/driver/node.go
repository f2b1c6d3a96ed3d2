package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/volid"
)

var nodeCaps = []csi.NodeServiceCapability_RPC_Type{
	csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
	csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
	csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
	csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
}

func (d *NodeServer) NodeGetCapabilities(ctx context.Context, req *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	caps := make([]*csi.NodeServiceCapability, 0, len(nodeCaps))
	for _, c := range nodeCaps {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *NodeServer) NodeGetInfo(ctx context.Context, req *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.NodeID(), AccessibleTopology: d.nodeTopology()}, nil
}

// stager parses a volume ID for a node call and finds the backend's node side.
func (d *NodeServer) stager(rawID string) (volid.Volume, backend.Stager, error) {
	id, err := parseVolumeID(rawID)
	if err != nil {
		return id, nil, err
	}
	s, ok := d.opts.Stagers[id.Backend]
	if !ok {
		return id, nil, status.Errorf(codes.NotFound, "volume %s is on backend %q, which is not in this node's driver config", id, id.Backend)
	}
	return id, s, nil
}

func (d *NodeServer) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "staging target path is required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	access, err := summarize([]*csi.VolumeCapability{req.GetVolumeCapability()})
	if err != nil {
		return nil, err
	}
	id, s, err := d.stager(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	b, _ := d.opts.Config.Backend(id.Backend)
	if err := d.kinds.supports(b.Kind, access); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "volume %s: %v", id, err)
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	sreq := &backend.StageRequest{
		ID: id, StagingPath: req.GetStagingTargetPath(), Block: access.block, FsType: access.fsType,
		Access: accessMode(req.GetVolumeCapability()), ReadOnly: req.GetPublishContext()[backend.PublishContextReadOnly] == "true",
		Context: req.GetVolumeContext(), PublishContext: req.GetPublishContext(), Secrets: req.GetSecrets(),
	}
	if m := req.GetVolumeCapability().GetMount(); m != nil {
		sreq.MountFlags = m.GetMountFlags()
	}
	if err := s.StageVolume(ctx, sreq); err != nil {
		return nil, toStatus(err)
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

// accessMode is what the node needs to know of a CSI access mode.
func accessMode(c *csi.VolumeCapability) backend.AccessMode {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:
		return backend.AccessMode{ReaderOnly: true}
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return backend.AccessMode{MultiNode: true, ReaderOnly: true}
	case csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER, csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		return backend.AccessMode{MultiNode: true}
	}
	return backend.AccessMode{}
}

func (d *NodeServer) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "staging target path is required")
	}
	id, s, err := d.stager(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.UnstageVolume(ctx, id, req.GetStagingTargetPath()); err != nil {
		return nil, toStatus(err)
	}
	// Hand the staging directory back as kubelet made it: empty.
	if err := os.Remove(filepath.Join(req.GetStagingTargetPath(), targetsFile)); err != nil && !os.IsNotExist(err) {
		return nil, status.Errorf(codes.Internal, "remove %s from %s: %v", targetsFile, req.GetStagingTargetPath(), err)
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (d *NodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "staging target path is required: this plugin stages volumes")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	access, err := summarize([]*csi.VolumeCapability{req.GetVolumeCapability()})
	if err != nil {
		return nil, err
	}
	id, s, err := d.stager(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.Repair(ctx, id, req.GetStagingTargetPath(), req.GetPublishContext()); err != nil {
		return nil, toStatus(err)
	}
	source, block, err := s.PublishSource(ctx, id, req.GetStagingTargetPath())
	if err != nil {
		return nil, toStatus(err)
	}
	if block != access.block {
		return nil, status.Errorf(codes.InvalidArgument, "volume %s is staged as %s, publish asks for %s", id, accessName(block), accessName(access.block))
	}
	target := req.GetTargetPath()
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		// The mode allows one publish on the node: refuse a second target path.
		for _, other := range d.publishedTargets(req.GetStagingTargetPath()) {
			if filepath.Clean(other) != filepath.Clean(target) {
				return nil, status.Errorf(codes.FailedPrecondition, "volume %s is SINGLE_NODE_SINGLE_WRITER and already published at %s", id, other)
			}
		}
	}
	opts := []string{"bind"}
	if req.GetReadonly() || req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY {
		opts = append(opts, "ro")
	}
	if m := req.GetVolumeCapability().GetMount(); m != nil {
		opts = append(opts, m.GetMountFlags()...)
	}
	if err := d.bindMount(ctx, source, target, block, opts); err != nil {
		return nil, err
	}
	if err := d.recordTarget(req.GetStagingTargetPath(), target); err != nil {
		return nil, status.Errorf(codes.Internal, "record target %s in %s: %v", target, req.GetStagingTargetPath(), err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func accessName(block bool) string {
	if block {
		return "a block device"
	}
	return "a filesystem"
}

// bindMount binds source (a directory, or a device for block) onto target, idempotently.
func (d *NodeServer) bindMount(ctx context.Context, source, target string, block bool, opts []string) error {
	if _, err := mounter.Stat(ctx, target, d.opts.MountCallTimeout); errors.Is(err, unix.ENOTCONN) || errors.Is(err, mounter.ErrNotResponding) {
		// Bound to a client that died or a server that does not answer; the staged mount
		// answered its repair, so unbind here and bind again below.
		if err := mounter.UnmountDead(ctx, d.mounter, target, d.opts.MountCallTimeout); err != nil {
			return status.Errorf(codes.Internal, "unmount dead target %s: %v", target, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return status.Errorf(codes.Internal, "create parent of target %s: %v", target, err)
	}
	if block {
		f, err := os.OpenFile(target, os.O_CREATE, 0o640)
		if err != nil && !errors.Is(err, syscall.EISDIR) {
			return status.Errorf(codes.Internal, "create block target %s: %v", target, err)
		}
		if f != nil {
			f.Close()
		}
	} else if err := os.MkdirAll(target, 0o750); err != nil {
		return status.Errorf(codes.Internal, "create target %s: %v", target, err)
	}
	mounted, err := d.isMountPoint(target)
	if err != nil {
		return status.Errorf(codes.Internal, "check target %s: %v", target, err)
	}
	if mounted {
		return nil
	}
	if err := d.mounter.Mount(source, target, "", opts); err != nil {
		return status.Errorf(codes.Internal, "bind %s to %s: %v", source, target, err)
	}
	return nil
}

// isMountPoint handles files (block targets) as well as directories.
func (d *NodeServer) isMountPoint(path string) (bool, error) {
	mps, err := d.mounter.List()
	if err != nil {
		return false, err
	}
	for _, mp := range mps {
		if mp.Path == path {
			return true, nil
		}
	}
	return false, nil
}

func (d *NodeServer) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	target := req.GetTargetPath()
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	id, err := parseVolumeID(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	_, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	for {
		mounted, err := d.isMountPoint(target)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "check target %s: %v", target, err)
		}
		if !mounted {
			break
		}
		// A dead NFS server blocks a plain unmount: forced, then lazy, past the bound.
		if err := mounter.UnmountDead(ctx, d.mounter, target, d.opts.MountCallTimeout); err != nil {
			return nil, status.Errorf(codes.Internal, "unmount %s: %v", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
		return nil, status.Errorf(codes.Internal, "remove target %s: %v", target, err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (d *NodeServer) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	path := req.GetVolumePath()
	if path == "" {
		return nil, status.Error(codes.InvalidArgument, "volume path is required")
	}
	if _, err := parseVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	st, err := mounter.Stat(ctx, path, d.opts.MountCallTimeout)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, status.Errorf(codes.NotFound, "volume path %s does not exist", path)
		}
		if errors.Is(err, mounter.ErrNotResponding) {
			return nil, notResponding(path, err)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "volume path %s is not usable (%v); NodeGetVolumeHealth reports it, the next publish remounts it", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		size, err := blockDeviceSize(path)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}}}, nil
	}
	fs, err := mounter.Statfs(ctx, path, d.opts.MountCallTimeout)
	if errors.Is(err, mounter.ErrNotResponding) {
		return nil, notResponding(path, err)
	}
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "statfs %s: %v", path, err)
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: volumeUsage(fs)}, nil
}

// volumeUsage turns a statfs into CSI usage. Figures a filesystem does not keep consistently
// are left out rather than wrapped around: ceph-fuse reports f_files as the inodes in use and
// f_ffree as -1 (no limit), which would read as 2 inodes, 3 used, -1 available.
func volumeUsage(fs unix.Statfs_t) []*csi.VolumeUsage {
	bsize := int64(fs.Bsize)
	usage := []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: int64(fs.Blocks) * bsize, Available: int64(fs.Bavail) * bsize}}
	if fs.Bfree <= fs.Blocks {
		usage[0].Used = int64(fs.Blocks-fs.Bfree) * bsize
	}
	if fs.Files > 0 && fs.Ffree <= fs.Files && fs.Files <= math.MaxInt64 {
		usage = append(usage, &csi.VolumeUsage{Unit: csi.VolumeUsage_INODES,
			Total: int64(fs.Files), Available: int64(fs.Ffree), Used: int64(fs.Files - fs.Ffree)})
	}
	return usage
}

// notResponding is the answer about a path whose server does not answer: the call on it
// goes on in the background, and no lock is held across it.
func notResponding(path string, err error) error {
	return status.Errorf(codes.Unavailable, "volume path %s: %v; its storage server (NFS server, Ceph MDS, FUSE daemon) is unreachable, NodeGetVolumeHealth reports it", path, err)
}

// NodeGetVolumeHealth reports the volume condition (CSI 1.13 replaced VolumeCondition in
// NodeGetVolumeStats with this call): a path whose client died, such as a killed ceph-fuse
// answering "transport endpoint is not connected", is INACCESSIBLE.
func (d *NodeServer) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if _, err := parseVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	health := &csi.VolumeHealth{VolumeId: req.GetVolumeId()}
	for _, path := range []string{req.GetStagingTargetPath(), req.GetVolumePublishPath()} {
		if path == "" {
			continue
		}
		_, err := mounter.Stat(ctx, path, d.opts.MountCallTimeout)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOENT):
			health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
				Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: "PathMissing", Message: fmt.Sprintf("%s does not exist", path)})
		case errors.Is(err, mounter.ErrNotResponding):
			health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
				Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: "NotResponding",
				Message: fmt.Sprintf("%v: its storage server does not answer", err)})
		case errors.Is(err, unix.ENOTCONN):
			health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
				Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: "TransportEndpointNotConnected",
				Message: fmt.Sprintf("%s: the storage client died; the next publish or a plugin restart remounts it", path)})
		default:
			health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
				Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: "PathUnusable", Message: fmt.Sprintf("%s: %v", path, err)})
		}
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: health}, nil
}

func blockDeviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open block device %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of block device %s: %w", path, err)
	}
	return size, nil
}

func (d *NodeServer) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume path is required")
	}
	id, s, err := d.stager(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	st, err := mounter.Stat(ctx, req.GetVolumePath(), d.opts.MountCallTimeout)
	if errors.Is(err, mounter.ErrNotResponding) {
		return nil, notResponding(req.GetVolumePath(), err)
	}
	// The kubelet may name a block volume by the publish path of a pod since deleted (one of
	// several that shared it): the staged device is what grows, and the staging path says it.
	stagedBlock := errors.Is(err, unix.ENOENT) && req.GetStagingTargetPath() != "" && req.GetVolumeCapability().GetBlock() != nil
	if err != nil && !stagedBlock {
		return nil, status.Errorf(codes.NotFound, "volume path %s: %v", req.GetVolumePath(), err)
	}
	required, _, err := capacityRange(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	staging := req.GetStagingTargetPath()
	if staging == "" {
		// Optional in the spec; the published path leads back to it.
		staging = d.stagingPathOf(req.GetVolumePath())
	}
	if staging == "" && st.Mode&unix.S_IFMT == unix.S_IFBLK {
		// A raw block target: no filesystem to grow; krbd and rbd-nbd devices follow the image.
		size, err := blockDeviceSize(req.GetVolumePath())
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if size < required {
			return nil, status.Errorf(codes.FailedPrecondition, "block device at %s is %d bytes, less than %d: pass staging_target_path so the node can refresh the attachment", req.GetVolumePath(), size, required)
		}
		return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
	}
	if staging == "" {
		// staging_target_path is optional in the spec. A kind that grows nothing on the node
		// (a shared filesystem whose quota is the size) needs none.
		if b, ok := d.opts.Config.Backend(id.Backend); ok && !d.kinds[b.Kind].NodeExpands {
			fs, err := mounter.Statfs(ctx, req.GetVolumePath(), d.opts.MountCallTimeout)
			if errors.Is(err, mounter.ErrNotResponding) {
				return nil, notResponding(req.GetVolumePath(), err)
			}
			if err != nil {
				return nil, status.Errorf(codes.FailedPrecondition, "statfs %s: %v", req.GetVolumePath(), err)
			}
			return &csi.NodeExpandVolumeResponse{CapacityBytes: max(required, int64(fs.Blocks)*int64(fs.Bsize))}, nil
		}
		return nil, status.Error(codes.InvalidArgument, "staging target path is required to expand a staged volume")
	}
	ctx, release, err := d.inflight.acquire(ctx, id.String())
	if err != nil {
		return nil, err
	}
	defer release()
	size, err := s.ExpandVolume(ctx, id, staging, required)
	if err != nil {
		return nil, toStatus(err)
	}
	klog.FromContext(ctx).V(2).Info("Node expanded the volume", "bytes", size)
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}
