package rbd

import "github.com/shiphold/shiphold/pkg/backend"

// Capabilities: an image is a block device, or one node's ext4/xfs filesystem made on it;
// images are whole MiB and a clone keeps its parent's size.
var Capabilities = backend.Capabilities{
	Kind:                 backend.KindRBD,
	Block:                true,
	FsTypes:              []string{"ext4", "xfs"},
	NodeExpands:          true,
	TenantIdentity:       true,
	AllocationUnit:       1 << 20,
	ClonesKeepSourceSize: true,
}
