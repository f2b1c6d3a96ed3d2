package cephfs

import "github.com/shiphold/shiphold/pkg/backend"

// Capabilities: a subvolume is a shared filesystem whose quota is its size, a clone's
// quota the size asked.
var Capabilities = backend.Capabilities{
	Kind:             backend.KindCephFS,
	SharedFilesystem: true,
	TenantIdentity:   true,
	AllocationUnit:   1,
}
