package isilon

import "github.com/shiphold/shiphold/pkg/backend"

// Capabilities: an export is a shared filesystem whose directory quota is its size; a
// clone is a copy of its source directory, at least as large.
var Capabilities = backend.Capabilities{
	Kind:                 backend.KindIsilon,
	SharedFilesystem:     true,
	AllocationUnit:       1,
	ClonesKeepSourceSize: true,
}
