package ceph

import (
	"encoding/json"
	"fmt"
)

// MonCommander sends monitor commands; *rados.Conn is one.
type MonCommander interface {
	MonCommand(args []byte) ([]byte, string, error)
}

// PoolsAvailable reads each pool's max_avail from the monitors' df: the bytes new data can
// still take in that pool, after replication and the full ratio.
func PoolsAvailable(conn MonCommander) (map[string]int64, error) {
	out, status, err := conn.MonCommand([]byte(`{"prefix":"df","format":"json"}`))
	if err != nil {
		return nil, fmt.Errorf("ceph df: %w: %s", err, status)
	}
	var df struct {
		Pools []struct {
			Name  string `json:"name"`
			Stats struct {
				MaxAvail int64 `json:"max_avail"`
			} `json:"stats"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(out, &df); err != nil {
		return nil, fmt.Errorf("parse ceph df: %w", err)
	}
	avail := make(map[string]int64, len(df.Pools))
	for _, p := range df.Pools {
		avail[p.Name] = p.Stats.MaxAvail
	}
	return avail, nil
}
