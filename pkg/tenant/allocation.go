package tenant

import "github.com/shiphold/shiphold/pkg/backend"

// allocation is how a backend kind sizes a new volume, as its CreateVolume does: RBD
// rounds up to whole MiB; a clone on RBD or Isilon keeps its source's size when that is
// larger than the request, a CephFS clone gets the requested size as its quota.
type allocation struct {
	unit             int64
	keepsSourceBytes bool
}

var allocations = map[string]allocation{
	backend.KindRBD:    {unit: 1 << 20, keepsSourceBytes: true},
	backend.KindCephFS: {unit: 1},
	backend.KindIsilon: {unit: 1, keepsSourceBytes: true},
}

// Allocated is the size a backend of kind allocates for required bytes, cloned from a source
// of sourceBytes (0 for none): what a tenant's quota counts.
func Allocated(kind string, required, sourceBytes int64) int64 {
	a, ok := allocations[kind]
	if !ok {
		a = allocation{unit: 1, keepsSourceBytes: true}
	}
	n := (required + a.unit - 1) / a.unit * a.unit
	if a.keepsSourceBytes && sourceBytes > n {
		n = sourceBytes
	}
	return n
}

// KeepsSourceBytes reports whether a clone on kind may be larger than requested, so that
// the quota check must know its source's size.
func KeepsSourceBytes(kind string) bool {
	a, ok := allocations[kind]
	return !ok || a.keepsSourceBytes
}
