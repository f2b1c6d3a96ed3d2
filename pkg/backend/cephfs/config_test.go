package cephfs

import (
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/config/configtest"
)

var cephfsSections = config.Sections{"cephfs": func() config.Section { return new(Config) }}

// TestConfigSection: the cephfs section decodes from the config file's shape and is
// refused with what to fix.
func TestConfigSection(t *testing.T) {
	const entry = "backends: [{name: f, kind: cephfs, cephfs: {clusterID: abc, monitors: [\"m:6789\"]%s}}]"
	fc := configtest.Decode[*Config](t, cephfsSections, strings.Replace(entry, "%s", ", fsName: cephfs, subvolumeGroupPrefix: sh-, mounter: fuse, credentials: {userID: u, keyFile: /k}", 1))
	if fc.FSName != "cephfs" || fc.SubvolumeGroupPrefix != "sh-" || fc.Mounter != "fuse" || fc.ClusterID != "abc" || fc.Monitors[0] != "m:6789" || fc.Credentials.KeyFile != "/k" {
		t.Fatalf("cephfs section decoded wrong: %+v", fc)
	}
	configtest.Rejects(t, cephfsSections, entry, []configtest.Reject{
		{Name: "no fsName", Fields: "", Want: "cephfs.fsName is required"},
		{Name: "unknown field", Fields: ", fsName: f, pool: p", Want: `unknown field "pool"`},
		{Name: "both keys", Fields: ", fsName: f, credentials: {keyringFile: /k, keyFile: /f}", Want: "cephfs.credentials: set keyringFile or keyFile, not both"},
	})
}

func TestConfigValidate(t *testing.T) {
	cluster := ceph.Cluster{ClusterID: "c", Monitors: []string{"m"}}
	configtest.Validates(t, []configtest.Validation{
		{Name: "complete", Section: &Config{FSName: "f", Cluster: cluster}, Want: ""},
		{Name: "no fsName", Section: &Config{Cluster: cluster}, Want: "cephfs.fsName is required"},
		{Name: "no monitors", Section: &Config{FSName: "f", Cluster: ceph.Cluster{ClusterID: "c"}}, Want: "cephfs.monitors is required"},
	})
}

// The constructors take only a backend whose section is cephfs's.
func TestConstructorsNeedTheCephFSSection(t *testing.T) {
	other := &config.Backend{Name: "x", Kind: "cephfs", Section: &otherSection{}}
	if _, err := NewStager(other); err == nil || !strings.Contains(err.Error(), `backend "x": kind cephfs needs its cephfs section`) {
		t.Fatalf("NewStager = %v", err)
	}
	if _, err := NewController(other, ceph.NewConnections()); err == nil || !strings.Contains(err.Error(), "needs its cephfs section") {
		t.Fatalf("NewController = %v", err)
	}
}

type otherSection struct{}

func (otherSection) Validate() error { return nil }
