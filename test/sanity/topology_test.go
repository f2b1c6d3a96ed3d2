package sanity

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// bareMetal is the node label a -topo run's backend is limited to; the sanity node has it.
var bareMetal = map[string]string{"example.com/platform": "bare-metal"}

// checkTopology runs before csi-sanity on a -topo run: a node without the label cannot
// have a volume of the backend (RESOURCE_EXHAUSTED), the labelled node can, and the
// volume's accessible_topology names the backend's key. csi-sanity then sends the
// labelled node's topology as the requisite of its volumes.
func checkTopology(t *testing.T, d *harness.Driver, cfg *config.Config, params map[string]string) {
	t.Helper()
	ctx := context.Background()
	key := cfg.Backends[0].TopologyKey()
	vm := harness.StartDriverLabelled(t, cfg, driver.ModeNode, "node-vm", "127.0.0.3", map[string]string{"example.com/platform": "openstack"})
	topologyOf := func(n *harness.Driver) *csi.Topology {
		info, err := csi.NewNodeClient(n.Conn).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return info.GetAccessibleTopology()
	}
	here, there := topologyOf(d), topologyOf(vm)
	if here.GetSegments()[key] != config.TopologyReachable || there.GetSegments()[key] != config.TopologyUnreachable {
		t.Fatalf("node topologies %v (labelled) and %v (unlabelled), want %s reachable and unreachable", here, there, key)
	}
	req := func(name string, requisite *csi.Topology) *csi.CreateVolumeRequest {
		return &csi.CreateVolumeRequest{Name: name + randomHash(), Parameters: params,
			CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{{
				AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}},
			AccessibilityRequirements: &csi.TopologyRequirement{Requisite: []*csi.Topology{requisite}, Preferred: []*csi.Topology{requisite}}}
	}
	_, err := d.Controller().CreateVolume(ctx, req("sanity-topo-vm-", there))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a volume for the unlabelled node: %v, want RESOURCE_EXHAUSTED", err)
	}
	rsp, err := d.Controller().CreateVolume(ctx, req("sanity-topo-", here))
	if err != nil {
		t.Fatalf("a volume for the labelled node: %v", err)
	}
	got := rsp.GetVolume().GetAccessibleTopology()
	if len(got) != 1 || got[0].GetSegments()[key] != config.TopologyReachable {
		t.Fatalf("accessible_topology %v, want [{%s: %s}]", got, key, config.TopologyReachable)
	}
	if _, err := d.Controller().DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: rsp.GetVolume().GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	t.Logf("topology: %s refused for %v, given %v for %v", key, there.GetSegments(), got[0].GetSegments(), here.GetSegments())
}
