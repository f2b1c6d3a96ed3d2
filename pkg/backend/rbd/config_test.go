package rbd

import (
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/config/configtest"
)

var rbdSections = config.Sections{"rbd": func() config.Section { return new(Config) }}

// TestConfigSection: the rbd section decodes from the config file's shape (the Ceph
// cluster fields inline, credentials nested) and is refused with what to fix.
func TestConfigSection(t *testing.T) {
	const entry = "backends: [{name: r, kind: rbd, rbd: {clusterID: abc, monitors: [\"m:6789\"], pool: p, imageFeatures: layering, mounter: rbd-fuse, confFile: /c%s}}]"
	rc := configtest.Decode[*Config](t, rbdSections, strings.Replace(entry, "%s", ", credentials: {userID: admin, keyringFile: /k}", 1))
	if rc.Pool != "p" || rc.ClusterID != "abc" || rc.Monitors[0] != "m:6789" || rc.ConfFile != "/c" || rc.ImageFeatures != "layering" || rc.Mounter != MounterFuse ||
		rc.Credentials.UserID != "admin" || rc.Credentials.KeyringFile != "/k" {
		t.Fatalf("rbd section decoded wrong: %+v", rc)
	}
	configtest.Rejects(t, rbdSections, entry, []configtest.Reject{
		{Name: "unknown field", Fields: ", poool: x", Want: `unknown field "poool"`},
		{Name: "unknown credentials field", Fields: ", credentials: {user: x}", Want: `unknown field "user"`},
		{Name: "both keys", Fields: ", credentials: {keyringFile: /k, keyFile: /f}", Want: "rbd.credentials: set keyringFile or keyFile, not both"},
	})
}

func TestConfigValidate(t *testing.T) {
	configtest.Validates(t, []configtest.Validation{
		{Name: "complete", Section: &Config{Pool: "p", Cluster: ceph.Cluster{ClusterID: "c", Monitors: []string{"m"}}}, Want: ""},
		{Name: "no pool", Section: &Config{Cluster: ceph.Cluster{ClusterID: "c", Monitors: []string{"m"}}}, Want: "rbd.pool is required"},
		{Name: "no monitors", Section: &Config{Pool: "p", Cluster: ceph.Cluster{ClusterID: "c"}}, Want: "rbd.monitors is required"},
		{Name: "no cluster ID", Section: &Config{Pool: "p", Cluster: ceph.Cluster{Monitors: []string{"m"}}}, Want: "rbd.clusterID is required"},
	})
}

// The constructors take only a backend whose section is rbd's.
func TestConstructorsNeedTheRBDSection(t *testing.T) {
	other := &config.Backend{Name: "x", Kind: "rbd", Section: nil}
	if _, err := NewStager(other); err == nil || !strings.Contains(err.Error(), `backend "x": kind rbd needs its rbd section`) {
		t.Fatalf("NewStager = %v", err)
	}
	if _, err := NewController(other, ceph.NewConnections()); err == nil || !strings.Contains(err.Error(), `kind rbd needs its rbd section`) {
		t.Fatalf("NewController = %v", err)
	}
}
