package driver

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
)

const isilonKey = "topology.shiphold.io/isilon"

// newTopologyFixture is newFixture with the isilon backend reached only from bare-metal
// nodes; the node plugin runs on a node with these labels.
func newTopologyFixture(t *testing.T, nodeLabels map[string]string) *fixture {
	t.Helper()
	cfg := &config.Config{Backends: []config.Backend{
		{Name: "ceph-rbd", Kind: "rbd"},
		{Name: "isilon", Kind: "isilon", Topology: &config.Topology{NodeSelector: map[string]string{"example.com/platform": "bare-metal"}}},
	}}
	f := &fixture{rbd: newFake("ceph-rbd", "rbd"), nfs: newFake("isilon", "isilon"), stager: &fakeStager{staged: map[string]string{}}, mnt: mount.NewFakeMounter(nil)}
	d, err := Compose(ModeAll, Options{Kinds: registry.Kinds(),
		Name: "shiphold.csi.io", Version: "test", NodeName: "node1", NodeAddress: "10.0.0.5",
		NodeLabels: nodeLabels, Config: cfg,
		Controllers: map[string]backend.Controller{"ceph-rbd": f.rbd, "isilon": fakePublisher{f.nfs}},
		Stagers:     map[string]backend.Stager{"ceph-rbd": f.stager, "isilon": f.stager},
		Mounter:     f.mnt,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	return f
}

func TestNodeGetInfoPublishesTopology(t *testing.T) {
	testCases := []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"bare-metal node", map[string]string{"example.com/platform": "bare-metal"}, config.TopologyReachable},
		{"openstack node", map[string]string{"example.com/platform": "openstack"}, config.TopologyUnreachable},
		{"unlabelled node", nil, config.TopologyUnreachable},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newTopologyFixture(t, tc.labels)
			info, err := f.d.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
			if err != nil {
				t.Fatal(err)
			}
			seg := info.GetAccessibleTopology().GetSegments()
			if len(seg) != 1 || seg[isilonKey] != tc.want {
				t.Fatalf("segments %v, want only %s=%s (ceph-rbd has no topology)", seg, isilonKey, tc.want)
			}
		})
	}
	plain := newFixture(t, config.Tenants{})
	info, _ := plain.d.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if info.GetAccessibleTopology() != nil {
		t.Fatalf("no backend has a topology, yet the node publishes %v", info.GetAccessibleTopology())
	}
}

func TestPluginCapabilityAccessibilityConstraints(t *testing.T) {
	has := func(f *fixture) bool {
		rsp, err := f.d.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rsp.GetCapabilities() {
			if c.GetService().GetType() == csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS {
				return true
			}
		}
		return false
	}
	if !has(newTopologyFixture(t, nil)) {
		t.Fatal("a backend has a topology, but VOLUME_ACCESSIBILITY_CONSTRAINTS is not advertised")
	}
	if has(newFixture(t, config.Tenants{})) {
		t.Fatal("no backend has a topology, yet VOLUME_ACCESSIBILITY_CONSTRAINTS is advertised")
	}
}

func segment(kv ...string) *csi.Topology {
	s := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		s[kv[i]] = kv[i+1]
	}
	return &csi.Topology{Segments: s}
}

func TestCreateVolumeHonoursTopology(t *testing.T) {
	reach, unreach := segment(isilonKey, config.TopologyReachable), segment(isilonKey, config.TopologyUnreachable)
	testCases := []struct {
		name         string
		backend      string
		requirements *csi.TopologyRequirement
		code         codes.Code
		wantTopology string // the isilon key's value in accessible_topology; "" for none
	}{
		{"no requirements", "isilon", nil, codes.OK, config.TopologyReachable},
		{"requisite reaches", "isilon", &csi.TopologyRequirement{Requisite: []*csi.Topology{unreach, reach}}, codes.OK, config.TopologyReachable},
		{"preferred only reaches", "isilon", &csi.TopologyRequirement{Preferred: []*csi.Topology{segment(isilonKey, config.TopologyReachable, "zone", "a")}}, codes.OK, config.TopologyReachable},
		{"no segment reaches", "isilon", &csi.TopologyRequirement{Requisite: []*csi.Topology{unreach}, Preferred: []*csi.Topology{unreach}}, codes.ResourceExhausted, ""},
		{"segments without the key", "isilon", &csi.TopologyRequirement{Requisite: []*csi.Topology{segment("zone", "a")}}, codes.ResourceExhausted, ""},
		{"backend without topology ignores them", "ceph-rbd", &csi.TopologyRequirement{Requisite: []*csi.Topology{unreach}}, codes.OK, ""},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newTopologyFixture(t, nil)
			rsp, err := f.d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
				Name: "pvc-topo", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)},
				Parameters:                map[string]string{"backend": tc.backend, backend.ParamPVCNamespace: "shop"},
				AccessibilityRequirements: tc.requirements,
			})
			if tc.code != codes.OK {
				wantCode(t, err, tc.code, "unable to provision in the accessible topology")
				wantCode(t, err, tc.code, "nodes labelled example.com/platform=bare-metal")
				if len(f.nfs.vols) != 0 {
					t.Fatalf("a refused request created %d volumes", len(f.nfs.vols))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := rsp.GetVolume().GetAccessibleTopology()
			if tc.wantTopology == "" {
				if got != nil {
					t.Fatalf("accessible_topology %v for a backend every node reaches", got)
				}
				return
			}
			if len(got) != 1 || len(got[0].GetSegments()) != 1 || got[0].GetSegments()[isilonKey] != tc.wantTopology {
				t.Fatalf("accessible_topology %v, want [{%s: %s}]", got, isilonKey, tc.wantTopology)
			}
		})
	}
}
