package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const good = `
backends:
  - name: ceph-rbd
    kind: rbd
    rbd: {clusterID: abc, monitors: ["127.0.0.1:6789"], pool: rbd, credentials: {userID: admin, keyringFile: /k}}
  - name: ceph-fs
    kind: cephfs
    cephfs: {clusterID: abc, monitors: ["127.0.0.1:6789"], fsName: cephfs}
  - name: isilon
    kind: isilon
    isilon: {endpoint: "https://127.0.0.1:8080", isiPath: /ifs/data/shiphold, nfsServer: 127.0.0.1}
tenants:
  default: {maxVolumes: 10}
  overrides: {big: {maxVolumes: 100, maxBytes: 1000}}
`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := c.Backend("ceph-rbd")
	if !ok || b.RBD.Pool != "rbd" || b.RBD.Monitors[0] != "127.0.0.1:6789" || b.RBD.Credentials.UserID != "admin" {
		t.Fatalf("rbd backend decoded wrong: %+v", b)
	}
	if q := c.Tenants.QuotaFor("big"); q.MaxVolumes != 100 || q.MaxBytes != 1000 {
		t.Fatalf("override quota: %+v", q)
	}
	if q := c.Tenants.QuotaFor("other"); q.MaxVolumes != 10 {
		t.Fatalf("default quota: %+v", q)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown field", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p, poool: x}}]", "poool"},
		{"no backends", "backends: []", "no backends"},
		{"bad name", "backends: [{name: A_B, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}}]", "backend"},
		{"duplicate", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}}, {name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}}]", "twice"},
		{"unknown kind", "backends: [{name: a, kind: nfs, rbd: {clusterID: c, monitors: [m], pool: p}}]", "unknown kind"},
		{"kind mismatch", "backends: [{name: a, kind: cephfs, rbd: {clusterID: c, monitors: [m], pool: p}}]", "needs a cephfs section"},
		{"no pool", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m]}}]", "rbd.pool"},
		{"no monitors", "backends: [{name: a, kind: cephfs, cephfs: {clusterID: c, fsName: f}}]", "monitors"},
		{"isi path", "backends: [{name: a, kind: isilon, isilon: {endpoint: e, isiPath: /data, nfsServer: n}}]", "isiPath"},
		{"isi in flight", "backends: [{name: a, kind: isilon, isilon: {endpoint: e, isiPath: /ifs/d, nfsServer: n, maxRequestsInFlight: -1}}]", "maxRequestsInFlight"},
		{"two sections", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}, cephfs: {clusterID: c, monitors: [m], fsName: f}}]", "exactly one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

func TestIsilonZones(t *testing.T) {
	const base = `
backends:
  - name: isilon
    kind: isilon
    isilon:
      endpoint: "https://127.0.0.1:8080"
      isiPath: /ifs/data/shiphold
      nfsServer: 127.0.0.1
      zones:
`
	testCases := []struct {
		name, zones, wantErr string
	}{
		{name: "two zones", zones: "        - {name: zoneA, key: za, isiPath: /ifs/zoneA/shiphold}\n        - {name: zoneB, key: zb, isiPath: /ifs/zoneB/sh}\n"},
		{name: "key missing", zones: "        - {name: zoneA, isiPath: /ifs/zoneA/sh}\n", wantErr: "key"},
		{name: "key too long", zones: "        - {name: zoneA, key: zoneabcdefg, isiPath: /ifs/zoneA/sh}\n", wantErr: "1-8 characters"},
		{name: "key twice", zones: "        - {name: zoneA, key: z, isiPath: /ifs/zoneA/sh}\n        - {name: zoneB, key: z, isiPath: /ifs/zoneB/sh}\n", wantErr: "used twice"},
		{name: "default name", zones: "        - {name: System, key: s, isiPath: /ifs/sys2}\n", wantErr: "default accessZone"},
		{name: "nested in default", zones: "        - {name: zoneA, key: za, isiPath: /ifs/data/shiphold/za}\n", wantErr: "overlaps"},
		{name: "outside ifs", zones: "        - {name: zoneA, key: za, isiPath: /data}\n", wantErr: "below /ifs/"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base + tc.zones))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				b, _ := c.Backend("isilon")
				if len(b.Isilon.Zones) != 2 || b.Isilon.Zones[1].Key != "zb" || b.Isilon.Zones[0].IsiPath != "/ifs/zoneA/shiphold" {
					t.Fatalf("zones decoded wrong: %+v", b.Isilon.Zones)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
		})
	}
}

// The chart's access-zone example (deploy/helm/shiphold/examples/isilon-zones.yaml, whose
// config section the chart renders as config.yaml) is a config the driver accepts.
func TestChartIsilonZonesExampleParses(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "helm", "shiphold", "examples", "isilon-zones.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals struct {
		Config json.RawMessage `json:"config"`
	}
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(vals.Config)
	if err != nil {
		t.Fatalf("the example's config: %v", err)
	}
	if z := cfg.Backends[0].Isilon.Zones; len(z) != 2 || z[0].Name != "hpc" || z[1].NFSServer == "" {
		t.Fatalf("zones %+v, want hpc and web with their SmartConnect names", z)
	}
}
