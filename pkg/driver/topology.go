package driver

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/shiphold/shiphold/pkg/config"
)

// nodeTopology is what NodeGetInfo publishes: for every backend with a topology, whether
// this node reaches it; nil when no backend has one.
func (d *NodeServer) nodeTopology() *csi.Topology {
	seg := d.opts.Config.NodeSegments(d.opts.NodeLabels)
	if seg == nil {
		return nil
	}
	return &csi.Topology{Segments: seg}
}

// accessibleTopology checks a CreateVolume's accessibility requirements against the
// backend's topology and returns the volume's accessible_topology: nil (any node) for a
// backend without one.
func (d *ControllerServer) accessibleTopology(backendName string, req *csi.TopologyRequirement) ([]*csi.Topology, error) {
	b, ok := d.opts.Config.Backend(backendName)
	if !ok || b.Topology == nil {
		return nil, nil
	}
	key := b.TopologyKey()
	reached := []*csi.Topology{{Segments: map[string]string{key: config.TopologyReachable}}}
	if req == nil || (len(req.GetRequisite()) == 0 && len(req.GetPreferred()) == 0) {
		return reached, nil
	}
	// A segment without the key says nothing about reaching the backend, so it does not count.
	for _, seg := range append(req.GetRequisite(), req.GetPreferred()...) {
		if seg.GetSegments()[key] == config.TopologyReachable {
			return reached, nil
		}
	}
	return nil, status.Errorf(codes.ResourceExhausted,
		"unable to provision in the accessible topology: backend %q is reached only from nodes with %s=%s (nodes labelled %s), and no requested segment has it; allow such nodes in the StorageClass's allowedTopologies or choose another backend",
		backendName, key, config.TopologyReachable, labels.Set(b.Topology.NodeSelector))
}
