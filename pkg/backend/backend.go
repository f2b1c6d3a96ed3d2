// Package backend defines what every storage backend kind (rbd, cephfs, isilon) provides to
// the driver: a Controller for provisioning and a Stager for the node side. Backends know
// nothing of gRPC; they return StorageErrors that the driver maps to CSI codes.
package backend

import (
	"context"
	"time"

	"github.com/shiphold/shiphold/pkg/volid"
)

// Backend kinds, as written in the config file.
const (
	KindRBD    = "rbd"
	KindCephFS = "cephfs"
	KindIsilon = "isilon"
)

// Parameter keys that the driver handles itself for every kind.
const (
	ParamBackend = "backend"
	ParamFsType  = "csi.storage.k8s.io/fstype"
	// Set by external-provisioner --extra-create-metadata.
	ParamPVCName      = "csi.storage.k8s.io/pvc/name"
	ParamPVCNamespace = "csi.storage.k8s.io/pvc/namespace"
	ParamPVName       = "csi.storage.k8s.io/pv/name"
)

// VolumeRequest is a validated CreateVolume addressed to one backend.
type VolumeRequest struct {
	// Name is the CSI request name; its hash names the backend object.
	Name          string
	Tenant        string
	RequiredBytes int64
	LimitBytes    int64
	// Block is true for the raw block access type.
	Block bool
	// MultiNode is true when any requested access mode spans nodes.
	MultiNode bool
	// Parameters are the StorageClass parameters the kind declared in ParameterKeys.
	Parameters map[string]string
	Secrets    map[string]string
	// A content source is on this backend and in Tenant: the driver refuses any other.
	SourceSnapshot *volid.Snapshot
	SourceVolume   *volid.Volume
}

// ID returns the volume ID the request will produce on a backend at location loc.
func (r *VolumeRequest) ID(backendName, loc string) volid.Volume {
	return volid.Volume{Backend: backendName, Tenant: r.Tenant, Location: loc, Hash: volid.Hash(r.Name)}
}

// Volume is a provisioned volume as the backend reports it.
type Volume struct {
	ID            volid.Volume
	CapacityBytes int64
	// Context is handed to the CO as volume_context and comes back on the node.
	Context        map[string]string
	SourceSnapshot *volid.Snapshot
	SourceVolume   *volid.Volume
	// RequestName is the CSI name the volume was created for, when recorded.
	RequestName string
}

// Snapshot is a point-in-time copy of a volume.
type Snapshot struct {
	ID        volid.Snapshot
	SizeBytes int64
	CreatedAt time.Time
	Ready     bool
}

// Controller is the provisioning side of one configured backend.
type Controller interface {
	Name() string
	Kind() string
	// ParameterKeys lists the StorageClass parameters this kind accepts beyond the
	// driver's own (ParamBackend, ParamFsType, the PVC metadata).
	ParameterKeys() []string

	CreateVolume(ctx context.Context, req *VolumeRequest) (*Volume, error)
	// DeleteVolume succeeds when the volume is already gone.
	DeleteVolume(ctx context.Context, id volid.Volume, secrets map[string]string) error
	GetVolume(ctx context.Context, id volid.Volume, secrets map[string]string) (*Volume, error)
	// ListVolumes lists the volumes of one tenant, or of all tenants when tenant is "".
	ListVolumes(ctx context.Context, tenant string) ([]*Volume, error)
	// ExpandVolume grows the volume to at least requiredBytes and reports the new size and
	// whether the node must grow a filesystem.
	ExpandVolume(ctx context.Context, id volid.Volume, requiredBytes, limitBytes int64, secrets map[string]string) (int64, bool, error)

	CreateSnapshot(ctx context.Context, source volid.Volume, name string, params, secrets map[string]string) (*Snapshot, error)
	// DeleteSnapshot succeeds when the snapshot is already gone.
	DeleteSnapshot(ctx context.Context, id volid.Snapshot, secrets map[string]string) error
	GetSnapshot(ctx context.Context, id volid.Snapshot) (*Snapshot, error)
	// ListSnapshots lists snapshots of one volume, or all when source is nil.
	ListSnapshots(ctx context.Context, source *volid.Volume) ([]*Snapshot, error)

	// Capacity reports the bytes available for new volumes with these parameters.
	Capacity(ctx context.Context, params map[string]string) (int64, error)
	// Probe checks that the storage answers; the driver reports, never restarts, on failure.
	Probe(ctx context.Context) error
	Close()
}

// VolumePager is implemented by controllers that list a page of their volumes without
// reading every volume on the storage, so that ListVolumes pages cost O(page).
type VolumePager interface {
	// ListVolumesAfter lists, in the order of their ID strings, up to max volumes (all for
	// max 0) whose IDs sort after the ID after ("" lists from the first).
	ListVolumesAfter(ctx context.Context, after string, max int) ([]*Volume, error)
}

// Leftover is something a volume left on the storage on its way out, which the backend
// removes in the background: an RBD image in the trash awaiting its purge, a temporary
// clone snapshot. Admins see them with shipholdctl leftovers.
type Leftover struct {
	Backend, Tenant string
	// Kind says what it is ("trash entry", "temporary snapshot"), Name where it is.
	Kind, Name string
	// State is what is being done about it ("purge queued", "clone gone").
	State string
}

// Collector is implemented by backends whose deletes finish in the background.
type Collector interface {
	// Leftovers lists them.
	Leftovers(ctx context.Context) ([]Leftover, error)
	// Collect also sets their removal going where nothing does yet; the controller runs it
	// at start-up, for work a killed controller left half done.
	Collect(ctx context.Context) ([]Leftover, error)
}

// Node identifies a node for storage-side access control.
type Node struct {
	Name    string
	Address string
}

// PublishAccess is what ControllerPublishVolume grants a node.
type PublishAccess struct {
	ReadOnly bool
	// SingleNode is set for the SINGLE_NODE_* access modes: while one node holds the
	// volume, every other node is refused (see CheckSingleNode).
	SingleNode bool
}

// Publisher is ControllerPublishVolume's storage side, and every backend has one: each
// records on the volume which nodes may use it (a conflicting republish is AlreadyExists,
// a single-node volume on a second node FailedPrecondition); Isilon also grants the node's
// address on the export, the Ceph backends hand the node its tenant's cephx identity in the
// publish context, and RBD's unpublish of the last node fences clients still holding the image.
type Publisher interface {
	// PublishVolume answers NotFound when the volume does not exist: the driver does not
	// read it first.
	PublishVolume(ctx context.Context, id volid.Volume, node Node, access PublishAccess, volumeContext, secrets map[string]string) (map[string]string, error)
	// UnpublishVolume succeeds when the node has no access already.
	UnpublishVolume(ctx context.Context, id volid.Volume, node Node, secrets map[string]string) error
}

// PublishContextReadOnly is set to "true" in the publish context of a volume that
// ControllerPublishVolume published read-only, so that the node stages it read-only.
const PublishContextReadOnly = "shiphold.io/readonly"

// AccessMode is what a CSI access mode tells the node about other users of a volume.
type AccessMode struct {
	// MultiNode: other nodes may use the volume at the same time.
	MultiNode bool
	// ReaderOnly: nobody writes (SINGLE_NODE_READER_ONLY, MULTI_NODE_READER_ONLY).
	ReaderOnly bool
}

// StageRequest is a validated NodeStageVolume for one backend.
type StageRequest struct {
	ID          volid.Volume
	StagingPath string
	Block       bool
	FsType      string
	MountFlags  []string
	Access      AccessMode
	// ReadOnly is true when ControllerPublishVolume published the volume read-only.
	ReadOnly bool
	// Context is the volume_context from CreateVolume; PublishContext from ControllerPublish.
	Context        map[string]string
	PublishContext map[string]string
	Secrets        map[string]string
}

// WritesNothing reports whether the node must attach and mount the volume read-only.
func (r *StageRequest) WritesNothing() bool { return r.ReadOnly || r.Access.ReaderOnly }

// SingleWriter reports whether this node is the volume's only user and writes: a block
// backend takes the image's exclusive lock.
func (r *StageRequest) SingleWriter() bool { return !r.WritesNothing() && !r.Access.MultiNode }

// Stager is the node side of one configured backend. Everything it leaves on the node for
// a volume lives below the staging path, so a restarted plugin finds it again.
type Stager interface {
	// StageVolume attaches and mounts the volume below StagingPath. Idempotent.
	StageVolume(ctx context.Context, req *StageRequest) error
	// UnstageVolume undoes StageVolume, leaving nothing attached. Idempotent.
	UnstageVolume(ctx context.Context, id volid.Volume, stagingPath string) error
	// PublishSource is the staged directory, or block device, that NodePublish binds.
	PublishSource(ctx context.Context, id volid.Volume, stagingPath string) (source string, block bool, err error)
	// ExpandVolume grows what the node holds (device, filesystem) after a controller expand.
	ExpandVolume(ctx context.Context, id volid.Volume, stagingPath string, requiredBytes int64) (int64, error)
	// Repair remounts a staged volume whose client died (a killed ceph-fuse), with the
	// identity publishContext carries when there is one (nil when no request brought one:
	// the plugin's start). It returns nil when nothing needed repair.
	Repair(ctx context.Context, id volid.Volume, stagingPath string, publishContext map[string]string) error
}
