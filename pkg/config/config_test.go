package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// blockSection and shareSection stand in for two backend kinds' sections: this package
// knows no kind, it decodes whatever section type the kinds give.
type blockSection struct {
	Pool     string   `json:"pool"`
	Monitors []string `json:"monitors"`
	Key      string   `json:"key,omitempty"`
}

func (s *blockSection) Validate() error {
	if s.Pool == "" {
		return fmt.Errorf("block.pool is required")
	}
	return nil
}

type shareSection struct {
	Path string `json:"path"`
}

func (s *shareSection) Validate() error {
	if !strings.HasPrefix(s.Path, "/") {
		return fmt.Errorf("share.path %q must be absolute", s.Path)
	}
	return nil
}

var testSections = Sections{
	"block": func() Section { return new(blockSection) },
	"share": func() Section { return new(shareSection) },
}

const good = `
backends:
  - name: fast
    kind: block
    block: {pool: rbd, monitors: ["127.0.0.1:6789"], key: 1}
  - name: files
    kind: share
    share: {path: /ifs/data}
tenants:
  default: {maxVolumes: 10}
  overrides: {big: {maxVolumes: 100, maxBytes: 1000}}
`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(good), testSections)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := c.Backend("fast")
	if !ok || b.Kind != "block" {
		t.Fatalf("backend fast: %+v", b)
	}
	// A number where the section has a string decodes as before (YAML's number 1 is "1").
	if s, ok := b.Section.(*blockSection); !ok || s.Pool != "rbd" || s.Monitors[0] != "127.0.0.1:6789" || s.Key != "1" {
		t.Fatalf("block section decoded wrong: %#v", b.Section)
	}
	if s, ok := c.Backends[1].Section.(*shareSection); !ok || s.Path != "/ifs/data" {
		t.Fatalf("share section decoded wrong: %#v", c.Backends[1].Section)
	}
	if q := c.Tenants.QuotaFor("big"); q.MaxVolumes != 100 || q.MaxBytes != 1000 {
		t.Fatalf("override quota: %+v", q)
	}
	if q := c.Tenants.QuotaFor("other"); q.MaxVolumes != 10 {
		t.Fatalf("default quota: %+v", q)
	}
}

// TestParseRejects: each mistake is refused with a message naming what to fix.
func TestParseRejects(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown section field", "backends: [{name: a, kind: block, block: {pool: p, poool: x}}]", `backend "a": block: error unmarshaling JSON: while decoding JSON: json: unknown field "poool"`},
		{"unknown backend field", "backends: [{name: a, kind: block, block: {pool: p}, toplogy: {}}]", `unknown field "toplogy" (a backend has name, kind, topology and the section of its kind: block or share)`},
		{"misspelt section", "backends: [{name: a, kind: block, blokc: {pool: p}}]", `unknown field "blokc"`},
		{"unknown top-level field", "backend: []", `unknown field "backend"`},
		{"no backends", "backends: []", "no backends"},
		{"bad name", "backends: [{name: A_B, kind: block, block: {pool: p}}]", "backends[0]"},
		{"duplicate", "backends: [{name: a, kind: block, block: {pool: p}}, {name: a, kind: block, block: {pool: p}}]", `backend "a" defined twice`},
		{"unknown kind", "backends: [{name: a, kind: nfs, block: {pool: p}}]", `backend "a": unknown kind "nfs" (want block or share)`},
		{"no kind", "backends: [{name: a, block: {pool: p}}]", `backend "a": kind is required (block or share)`},
		{"section of another kind", "backends: [{name: a, kind: share, block: {pool: p}}]", `backend "a": has a block section but is of kind share: a backend has exactly one section, the one its kind names (share:)`},
		{"two sections", "backends: [{name: a, kind: block, block: {pool: p}, share: {path: /x}}]", "has a share section but is of kind block"},
		{"no section", "backends: [{name: a, kind: block}]", `backend "a": kind block needs a block section`},
		{"empty section", "backends: [{name: a, kind: block, block: }]", `backend "a": kind block needs a block section`},
		{"section invalid", "backends: [{name: a, kind: share, share: {path: rel}}]", `backend "a": share.path "rel" must be absolute`},
		{"second backend", "backends: [{name: a, kind: block, block: {pool: p}}, {kind: block, block: {pool: p, x: 1}}]", `backends[1]: block:`},
		{"bad tenant", "backends: [{name: a, kind: block, block: {pool: p}}]\ntenants: {overrides: {A_B: {}}}", "tenants.overrides"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), testSections)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

// TestMarshalKeepsTheFileShape: a config written out (as tests write the driver's config
// file) has each section under its kind's name and parses back to the same config.
func TestMarshalKeepsTheFileShape(t *testing.T) {
	c, err := Parse([]byte(withTopology), testSections)
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var shape struct {
		Backends []map[string]any `json:"backends"`
	}
	if err := yaml.Unmarshal(out, &shape); err != nil {
		t.Fatal(err)
	}
	if _, ok := shape.Backends[1]["share"]; !ok || shape.Backends[1]["kind"] != "share" || shape.Backends[1]["topology"] == nil {
		t.Fatalf("written backend %v, want kind share with a share section and its topology", shape.Backends[1])
	}
	back, err := Parse(out, testSections)
	if err != nil {
		t.Fatalf("written config does not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip changed the config:\n%#v\n%#v", back, c)
	}
}

// TestValidateBuiltConfig: a config built in code (no Parse) still needs its sections.
func TestValidateBuiltConfig(t *testing.T) {
	c := &Config{Backends: []Backend{{Name: "a", Kind: "block"}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `backend "a": kind block needs a block section`) {
		t.Fatalf("Validate = %v", err)
	}
	c.Backends[0].Section = &blockSection{}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "block.pool is required") {
		t.Fatalf("Validate = %v", err)
	}
	c.Backends[0].Section = &blockSection{Pool: "p"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSectionAs(t *testing.T) {
	b := &Backend{Name: "a", Kind: "block", Section: &blockSection{Pool: "p"}}
	if s, err := SectionAs[*blockSection](b); err != nil || s.Pool != "p" {
		t.Fatalf("SectionAs = %v, %v", s, err)
	}
	if _, err := SectionAs[*shareSection](b); err == nil || !strings.Contains(err.Error(), `backend "a": kind block needs its block section, the config has *config.blockSection`) {
		t.Fatalf("SectionAs of another kind = %v", err)
	}
	if _, err := SectionAs[*blockSection](nil); err == nil {
		t.Fatal("SectionAs(nil) succeeded")
	}
}

// A backend decodes only through Parse: decoding one directly would drop its section.
func TestBackendRefusesDirectDecoding(t *testing.T) {
	var c Config
	if err := yaml.Unmarshal([]byte(good), &c); err == nil || !strings.Contains(err.Error(), "config.Parse") {
		t.Fatalf("yaml.Unmarshal into Config = %v, want a pointer to config.Parse", err)
	}
}
