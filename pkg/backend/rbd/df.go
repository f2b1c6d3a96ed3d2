package rbd

import (
	"encoding/json"

	"github.com/shiphold/shiphold/pkg/backend"
)

// maxAvail reads a pool's max_avail from `ceph df --format json`.
func maxAvail(df []byte, pool string) (int64, error) {
	var out struct {
		Pools []struct {
			Name  string `json:"name"`
			Stats struct {
				MaxAvail int64 `json:"max_avail"`
			} `json:"stats"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(df, &out); err != nil {
		return 0, backend.Errorf(backend.Internal, "parse ceph df: %v", err)
	}
	for _, p := range out.Pools {
		if p.Name == pool {
			return p.Stats.MaxAvail, nil
		}
	}
	return 0, backend.Errorf(backend.InvalidArgument, "pool %q does not exist; fix the StorageClass parameter %q or the backend's pool", pool, ParamPool)
}
