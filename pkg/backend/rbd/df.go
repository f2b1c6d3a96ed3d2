package rbd

import "github.com/shiphold/shiphold/pkg/backend"

// maxAvail picks the pool's entry from ceph.PoolsAvailable.
func maxAvail(avail map[string]int64, pool string) (int64, error) {
	a, ok := avail[pool]
	if !ok {
		return 0, backend.Errorf(backend.InvalidArgument, "pool %q does not exist; fix the StorageClass parameter %q or the backend's pool", pool, ParamPool)
	}
	return a, nil
}
