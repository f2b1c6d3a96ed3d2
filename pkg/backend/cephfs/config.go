package cephfs

import (
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

// Config is the cephfs section of a backend of kind cephfs in the config file.
type Config struct {
	ceph.Cluster `json:",inline"`
	FSName       string `json:"fsName"`
	// SubvolumeGroupPrefix is put before the tenant name to form its subvolume group.
	SubvolumeGroupPrefix string `json:"subvolumeGroupPrefix,omitempty"`
	Mounter              string `json:"mounter,omitempty"`
}

// Validate names the first missing or conflicting field.
func (c *Config) Validate() error {
	if c.FSName == "" {
		return fmt.Errorf("cephfs.fsName is required")
	}
	return c.Cluster.Validate(backend.KindCephFS)
}
