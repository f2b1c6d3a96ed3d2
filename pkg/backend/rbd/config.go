package rbd

import (
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

// Config is the rbd section of a backend of kind rbd in the config file.
type Config struct {
	ceph.Cluster `json:",inline"`
	Pool         string `json:"pool"`
	// ImageFeatures is the default comma-separated feature list for new images.
	ImageFeatures string `json:"imageFeatures,omitempty"`
	// Mounter is the default node attach strategy: krbd, rbd-nbd, rbd-fuse or auto.
	Mounter string `json:"mounter,omitempty"`
}

// Validate names the first missing or conflicting field.
func (c *Config) Validate() error {
	if c.Pool == "" {
		return fmt.Errorf("rbd.pool is required")
	}
	return c.Cluster.Validate(backend.KindRBD)
}
