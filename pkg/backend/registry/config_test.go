package registry

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/config"
)

// shippedConfigs are the config files the repository ships, each as the driver reads it:
// the raw manifest, the chart's values and example, and the one `make run` writes.
func shippedConfigs(t *testing.T) map[string][]byte {
	t.Helper()
	root := filepath.Join("..", "..", "..")
	read := func(p string) []byte {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	out := map[string][]byte{}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(read("deploy/kubernetes/configmap.yaml"), &cm); err != nil {
		t.Fatal(err)
	}
	out["deploy/kubernetes/configmap.yaml"] = []byte(cm.Data["config.yaml"])
	for _, p := range []string{"deploy/helm/shiphold/values.yaml", "deploy/helm/shiphold/examples/isilon-zones.yaml"} {
		var vals struct {
			Config json.RawMessage `json:"config"`
		}
		if err := yaml.Unmarshal(read(p), &vals); err != nil {
			t.Fatal(err)
		}
		out[p] = vals.Config
	}
	heredoc := regexp.MustCompile(`(?s)cat > "\$RUN/config.yaml" <<YAML\n(.*?)\nYAML\n`).FindSubmatch(read("hack/run-local.sh"))
	if heredoc == nil {
		t.Fatal("hack/run-local.sh writes no config.yaml here-document")
	}
	vars := strings.NewReplacer("$FSID", "6f1b3c3e-0000-4000-8000-000000000000", "$MON", "127.0.0.1:6789", "$ISI_URL", "https://127.0.0.1:8080",
		"$SHIPHOLD_CEPH_DIR", "/tmp/ceph", "$RUN", "/tmp/run")
	out["hack/run-local.sh"] = []byte(vars.Replace(string(heredoc[1])))
	return out
}

// TestShippedConfigsParse: the config files the repository ships keep their shape (kind:
// rbd with an rbd: section...) and decode into each kind's own section type.
func TestShippedConfigsParse(t *testing.T) {
	for name, data := range shippedConfigs(t) {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse(data, Sections())
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, b := range cfg.Backends {
				kinds[b.Kind]++
				switch s := b.Section.(type) {
				case *rbd.Config:
					if b.Kind != backend.KindRBD || s.Pool != "rbd" || len(s.Monitors) != 1 || s.ClusterID == "" || s.Credentials.KeyringFile == "" {
						t.Errorf("backend %s: rbd section %+v", b.Name, s)
					}
				case *cephfs.Config:
					if b.Kind != backend.KindCephFS || s.FSName != "cephfs" || len(s.Monitors) != 1 || s.Credentials.KeyringFile == "" {
						t.Errorf("backend %s: cephfs section %+v", b.Name, s)
					}
				case *isilon.Config:
					if b.Kind != backend.KindIsilon || !strings.HasPrefix(s.Endpoint, "https://") || s.IsiPath != "/ifs/data/shiphold" || s.NFSServer == "" || s.CredentialsFile == "" {
						t.Errorf("backend %s: isilon section %+v", b.Name, s)
					}
				default:
					t.Errorf("backend %s: section %T", b.Name, b.Section)
				}
			}
			if name != "deploy/helm/shiphold/examples/isilon-zones.yaml" && (kinds["rbd"] != 1 || kinds["cephfs"] != 1 || kinds["isilon"] != 1) {
				t.Errorf("kinds %v, want one backend of each", kinds)
			}
		})
	}
}

// TestSectionMismatchRefused: a backend built in code with another kind's section is
// refused by name before any kind's constructor runs.
func TestSectionMismatchRefused(t *testing.T) {
	cfg := &config.Config{Backends: []config.Backend{{Name: "x", Kind: backend.KindRBD, Section: &cephfs.Config{FSName: "f"}}}}
	_, err := Open(cfg, true, true)
	if err == nil || err.Error() != `backend "x": kind rbd takes its section as *rbd.Config, the config has *cephfs.Config` {
		t.Fatalf("Open = %v", err)
	}
}

// lustreConfig is the section of a fourth kind that lives in this test file alone: adding
// it needs no change to pkg/config, only its package and its line in kinds.
type lustreConfig struct {
	MGS     string `json:"mgs"`
	FSName  string `json:"fsName"`
	Stripes int    `json:"stripes,omitempty"`
}

func (c *lustreConfig) Validate() error {
	switch {
	case c.MGS == "":
		return fmt.Errorf("lustre.mgs is required")
	case c.Stripes < 0:
		return fmt.Errorf("lustre.stripes %d must be positive", c.Stripes)
	}
	return nil
}

// lustreController and lustreStager stand in for the kind's two sides; the registry only
// opens and closes them.
type lustreController struct {
	backend.Controller
	name   string
	cfg    *lustreConfig
	closed *bool
}

func (c *lustreController) Name() string { return c.name }
func (c *lustreController) Close()       { *c.closed = true }

type lustreStager struct {
	backend.Stager
	cfg *lustreConfig
}

func newLustreController(b *config.Backend) (*lustreController, error) {
	s, err := config.SectionAs[*lustreConfig](b)
	if err != nil {
		return nil, err
	}
	return &lustreController{name: b.Name, cfg: s, closed: new(bool)}, nil
}

func newLustreStager(b *config.Backend) (*lustreStager, error) {
	s, err := config.SectionAs[*lustreConfig](b)
	if err != nil {
		return nil, err
	}
	return &lustreStager{cfg: s}, nil
}

// TestFourthKind registers a kind from this test file alone (its line in kinds), then
// decodes a config naming it, opens its sides, and refuses its bad sections.
func TestFourthKind(t *testing.T) {
	saved := kinds
	t.Cleanup(func() { kinds = saved })
	kinds = append(append([]kind(nil), saved...),
		kind{backend.Capabilities{Kind: "lustre"}, section[lustreConfig], ownConnections(newLustreController), stager(newLustreStager)})

	const doc = `
backends:
  - name: scratch
    kind: lustre
    lustre: {mgs: "10.0.0.9@tcp", fsName: scratch, stripes: 4}
  - name: ceph-rbd
    kind: rbd
    rbd: {clusterID: abc, monitors: ["127.0.0.1:6789"], pool: rbd, credentials: {userID: admin, keyringFile: /k}}
`
	cfg, err := config.Parse([]byte(doc), Sections())
	if err != nil {
		t.Fatal(err)
	}
	lc, ok := cfg.Backends[0].Section.(*lustreConfig)
	if !ok || lc.MGS != "10.0.0.9@tcp" || lc.FSName != "scratch" || lc.Stripes != 4 {
		t.Fatalf("lustre section decoded as %#v", cfg.Backends[0].Section)
	}
	if _, ok := Kinds()["lustre"]; !ok {
		t.Fatal("Kinds() lacks the registered kind")
	}
	opened, err := Open(cfg, true, true)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, ok := opened.Controllers["scratch"].(*lustreController)
	if !ok || ctrl.cfg != lc || opened.Stagers["scratch"].(*lustreStager).cfg != lc {
		t.Fatalf("opened %#v, want the lustre sides on the decoded section", opened.Controllers["scratch"])
	}
	if _, ok := opened.Controllers["ceph-rbd"].(*rbd.Controller); !ok {
		t.Fatalf("rbd backend opened as %T", opened.Controllers["ceph-rbd"])
	}
	opened.Close()
	if !*ctrl.closed {
		t.Fatal("Close did not close the lustre controller")
	}

	for _, tc := range []struct{ name, entry, want string }{
		{"invalid", `{name: s, kind: lustre, lustre: {fsName: scratch}}`, `backend "s": lustre.mgs is required`},
		{"unknown field", `{name: s, kind: lustre, lustre: {mgs: m, stripe: 4}}`, `backend "s": lustre: error unmarshaling JSON: while decoding JSON: json: unknown field "stripe"`},
		{"missing section", `{name: s, kind: lustre}`, `backend "s": kind lustre needs a lustre section`},
		{"section of another kind", `{name: s, kind: rbd, lustre: {mgs: m}}`, `backend "s": has a lustre section but is of kind rbd`},
		{"unknown kind", `{name: s, kind: gpfs, lustre: {mgs: m}}`, `unknown kind "gpfs" (want cephfs, isilon, lustre or rbd)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte("backends: ["+tc.entry+"]"), Sections())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want mention of %q", err, tc.want)
			}
		})
	}
}
