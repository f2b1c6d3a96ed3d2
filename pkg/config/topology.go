package config

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TopologyKeyPrefix begins the topology key of every backend with a topology:
// topology.shiphold.io/<backend name>.
const TopologyKeyPrefix = "topology.shiphold.io/"

// Values of a backend's topology key on a node.
const (
	TopologyReachable   = "reachable"
	TopologyUnreachable = "unreachable"
)

// Topology says which nodes reach a backend (the Isilon only from bare-metal workers, say).
type Topology struct {
	// NodeSelector holds node labels a node must all carry (with these values) to reach
	// the backend.
	NodeSelector map[string]string `json:"nodeSelector"`
}

// validate checks the selector; backend names (volid.ValidBackend) are already valid
// label names, so the key needs no check.
func (t *Topology) validate() error {
	if t == nil {
		return nil
	}
	if len(t.NodeSelector) == 0 {
		return fmt.Errorf("topology.nodeSelector is empty; list the node labels that reach the backend, or leave topology out so every node does")
	}
	for _, k := range sortedKeys(t.NodeSelector) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("topology.nodeSelector: label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(t.NodeSelector[k]); len(errs) > 0 {
			return fmt.Errorf("topology.nodeSelector: label %s value %q: %s", k, t.NodeSelector[k], strings.Join(errs, "; "))
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TopologyKey is the node label (and CSI topology segment key) that says whether a node
// reaches the backend; "" for a backend every node reaches.
func (b *Backend) TopologyKey() string {
	if b.Topology == nil {
		return ""
	}
	return TopologyKeyPrefix + b.Name
}

// Reaches tells whether a node with these labels reaches the backend.
func (b *Backend) Reaches(nodeLabels map[string]string) bool {
	if b.Topology == nil {
		return true
	}
	for k, v := range b.Topology.NodeSelector {
		if got, ok := nodeLabels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// NodeSegments is the node's topology: for every backend with a topology, its key with
// reachable or unreachable. Every node carries every key, so that the external-provisioner,
// which aggregates only nodes with the same keys, sees them all.
func (c *Config) NodeSegments(nodeLabels map[string]string) map[string]string {
	var seg map[string]string
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Topology == nil {
			continue
		}
		if seg == nil {
			seg = map[string]string{}
		}
		seg[b.TopologyKey()] = TopologyUnreachable
		if b.Reaches(nodeLabels) {
			seg[b.TopologyKey()] = TopologyReachable
		}
	}
	return seg
}

// HasTopology tells whether any backend is limited to some nodes.
func (c *Config) HasTopology() bool {
	for i := range c.Backends {
		if c.Backends[i].Topology != nil {
			return true
		}
	}
	return false
}
