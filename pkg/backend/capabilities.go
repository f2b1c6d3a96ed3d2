package backend

// Capabilities is what a backend kind serves, declared by the kind's own package, so that
// the driver asks instead of knowing kinds.
type Capabilities struct {
	// Kind is the name the config file gives the kind.
	Kind string
	// Block: volumes may be raw block devices (the block access type). Every kind serves
	// filesystem volumes (the mount access type).
	Block bool
	// SharedFilesystem: a filesystem volume may be written from several nodes at once.
	SharedFilesystem bool
	// FsTypes are the filesystems the node makes on a volume; nil means the storage's own
	// filesystem, whatever fsType is asked.
	FsTypes []string
	// NodeExpands: NodeExpandVolume grows something on the node (a device, a filesystem);
	// without it the controller's expansion is the whole of it.
	NodeExpands bool
	// AllocationUnit is what CreateVolume rounds a size up to a multiple of (1: bytes).
	AllocationUnit int64
	// ClonesKeepSourceSize: a clone is as large as its source when that is larger than asked.
	ClonesKeepSourceSize bool
	// TenantIdentity: nodes mount with the tenant's own storage identity (a cephx key)
	// that publish hands them, not by network address.
	TenantIdentity bool
}

// Allocated is the size the kind allocates for required bytes, cloned from a source of
// sourceBytes (0 for none), as its CreateVolume and ExpandVolume do.
func (c Capabilities) Allocated(required, sourceBytes int64) int64 {
	unit := max(c.AllocationUnit, 1)
	n := (required + unit - 1) / unit * unit
	if c.ClonesKeepSourceSize && sourceBytes > n {
		n = sourceBytes
	}
	return n
}
