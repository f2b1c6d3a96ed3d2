package isilon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/config/configtest"
)

var isilonSections = config.Sections{"isilon": func() config.Section { return new(Config) }}

// TestConfigSection: the isilon section decodes from the config file's shape and is
// refused with what to fix.
func TestConfigSection(t *testing.T) {
	const entry = `backends: [{name: i, kind: isilon, isilon: {endpoint: "https://a:8080", isiPath: /ifs/data/sh, nfsServer: nfs.example%s}}]`
	ic := configtest.Decode[*Config](t, isilonSections, strings.Replace(entry, "%s", ", accessZone: z, authType: basic, maxRequestsInFlight: 4, copyTimeout: 1h, insecureSkipVerify: true, credentialsFile: /c", 1))
	if ic.Endpoint != "https://a:8080" || ic.IsiPath != "/ifs/data/sh" || ic.NFSServer != "nfs.example" || ic.AccessZone != "z" || ic.AuthType != "basic" ||
		ic.MaxRequestsInFlight != 4 || ic.CopyTimeout != "1h" || !ic.InsecureSkipVerify || ic.CredentialsFile != "/c" {
		t.Fatalf("isilon section decoded wrong: %+v", ic)
	}
	configtest.Rejects(t, isilonSections, entry, []configtest.Reject{
		{Name: "unknown field", Fields: ", isiPth: /ifs/x", Want: `unknown field "isiPth"`},
		{Name: "auth type", Fields: ", authType: kerberos", Want: `isilon.authType "kerberos" must be session or basic`},
		{Name: "in flight", Fields: ", maxRequestsInFlight: -1", Want: "isilon.maxRequestsInFlight -1 must be positive"},
	})
}

func TestConfigValidate(t *testing.T) {
	configtest.Validates(t, []configtest.Validation{
		{Name: "complete", Section: &Config{Endpoint: "e", IsiPath: "/ifs/d", NFSServer: "n"}, Want: ""},
		{Name: "no endpoint", Section: &Config{IsiPath: "/ifs/d", NFSServer: "n"}, Want: "isilon.endpoint is required"},
		{Name: "path outside ifs", Section: &Config{Endpoint: "e", IsiPath: "/data", NFSServer: "n"}, Want: `isilon.isiPath "/data" must be an absolute path below /ifs/`},
		{Name: "no nfs server", Section: &Config{Endpoint: "e", IsiPath: "/ifs/d"}, Want: "isilon.nfsServer is required"},
	})
}

func TestConfigZones(t *testing.T) {
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
			c, err := config.Parse([]byte(base+tc.zones), isilonSections)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				isi := c.Backends[0].Section.(*Config)
				if len(isi.Zones) != 2 || isi.Zones[1].Key != "zb" || isi.Zones[0].IsiPath != "/ifs/zoneA/shiphold" {
					t.Fatalf("zones decoded wrong: %+v", isi.Zones)
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
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "helm", "shiphold", "examples", "isilon-zones.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals struct {
		Config json.RawMessage `json:"config"`
	}
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(vals.Config, isilonSections)
	if err != nil {
		t.Fatalf("the example's config: %v", err)
	}
	if z := cfg.Backends[0].Section.(*Config).Zones; len(z) != 2 || z[0].Name != "hpc" || z[1].NFSServer == "" {
		t.Fatalf("zones %+v, want hpc and web with their SmartConnect names", z)
	}
}
