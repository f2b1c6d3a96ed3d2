package ceph

import "fmt"

// Cluster is the part of an rbd or cephfs config section that locates the Ceph cluster,
// with the credentials used when a request brings none.
type Cluster struct {
	// ClusterID is the cluster fsid (or any stable name the admin chooses).
	ClusterID string   `json:"clusterID"`
	Monitors  []string `json:"monitors"`
	// ConfFile is an optional ceph.conf for extra client options.
	ConfFile    string             `json:"confFile,omitempty"`
	Credentials DefaultCredentials `json:"credentials,omitempty"`
}

// DefaultCredentials name a cephx user and where its key is. CSI secrets (userID, userKey)
// take precedence when a request carries them.
type DefaultCredentials struct {
	UserID      string `json:"userID,omitempty"`
	KeyringFile string `json:"keyringFile,omitempty"`
	KeyFile     string `json:"keyFile,omitempty"`
}

// Validate checks the cluster part of the config section named section (rbd, cephfs),
// naming the field to fix.
func (c *Cluster) Validate(section string) error {
	if c.ClusterID == "" {
		return fmt.Errorf("%s.clusterID is required", section)
	}
	if len(c.Monitors) == 0 {
		return fmt.Errorf("%s.monitors is required", section)
	}
	if c.Credentials.KeyringFile != "" && c.Credentials.KeyFile != "" {
		return fmt.Errorf("%s.credentials: set keyringFile or keyFile, not both", section)
	}
	return nil
}
