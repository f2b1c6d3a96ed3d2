package config

import (
	"strings"
	"testing"
)

const withTopology = `
backends:
  - name: fast
    kind: block
    block: {pool: rbd, monitors: ["127.0.0.1:6789"]}
  - name: isilon
    kind: share
    share: {path: /ifs/data/shiphold}
    topology:
      nodeSelector: {node.example.com/platform: bare-metal, example.com/isilon-net: "yes"}
`

func TestNodeSegments(t *testing.T) {
	c, err := Parse([]byte(withTopology), testSections)
	if err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"all selector labels", map[string]string{"node.example.com/platform": "bare-metal", "example.com/isilon-net": "yes", "other": "x"}, TopologyReachable},
		{"one label missing", map[string]string{"node.example.com/platform": "bare-metal"}, TopologyUnreachable},
		{"another value", map[string]string{"node.example.com/platform": "openstack", "example.com/isilon-net": "yes"}, TopologyUnreachable},
		{"no labels", nil, TopologyUnreachable},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			seg := c.NodeSegments(tc.labels)
			// The block backend has no topology: no key, every node reaches it.
			if len(seg) != 1 || seg["topology.shiphold.io/isilon"] != tc.want {
				t.Fatalf("segments %v, want only topology.shiphold.io/isilon=%s", seg, tc.want)
			}
		})
	}
	if !c.HasTopology() {
		t.Fatal("HasTopology is false with a topology configured")
	}
	if c2, _ := Parse([]byte(good), testSections); c2.HasTopology() || c2.NodeSegments(map[string]string{"a": "b"}) != nil {
		t.Fatal("a config without topology must publish no segments")
	}
}

func TestTopologyRejects(t *testing.T) {
	base := `
backends:
  - name: NAME
    kind: share
    share: {path: /ifs/data/shiphold}
    topology: TOPO
`
	testCases := []struct {
		name, backend, topo, want string
	}{
		{"empty selector", "isilon", "{nodeSelector: {}}", "nodeSelector is empty"},
		{"no selector", "isilon", "{}", "nodeSelector is empty"},
		{"bad label key", "isilon", `{nodeSelector: {"bad key": x}}`, `label key "bad key"`},
		{"bad label value", "isilon", `{nodeSelector: {ok: "-bad-"}}`, `value "-bad-"`},
		{"unknown field", "isilon", "{nodeSelector: {ok: x}, zones: [a]}", "unknown field"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.ReplaceAll(strings.ReplaceAll(base, "NAME", tc.backend), "TOPO", tc.topo)
			_, err := Parse([]byte(doc), testSections)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
