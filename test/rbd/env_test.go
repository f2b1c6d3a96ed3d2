// Package rbdtest runs the rbd backend against the real single-node Ceph started by
// hack/micro-ceph.sh. Tests skip when it is absent, or fail under SHIPHOLD_REQUIRE_STACK=1.
package rbdtest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

type cluster struct {
	conf, keyring, dir string
	backend            *config.Backend
}

// needCeph finds the local cluster through the harness (a missing prerequisite under
// harness.Require: skip, or fail under SHIPHOLD_REQUIRE_STACK=1).
func needCeph(t testing.TB) *cluster {
	t.Helper()
	cl := harness.LocalCeph(t)
	return clusterFor(harness.CephConf(), cl)
}

// clusterFor is the test view of a cluster: its ceph.conf for the CLIs and a backend entry
// for its rbd pool.
func clusterFor(conf string, cl ceph.Cluster) *cluster {
	return &cluster{conf: conf, dir: filepath.Dir(conf), keyring: cl.Credentials.KeyringFile,
		backend: &config.Backend{Name: "rbd-test", Kind: backend.KindRBD, Section: &rbd.Config{
			Cluster: cl, Pool: "rbd", Mounter: rbd.MounterFuse,
		}}}
}

func (c *cluster) controller(t testing.TB) (*rbd.Controller, *ceph.Connections) {
	t.Helper()
	conns := ceph.NewConnections()
	ctl, err := rbd.NewController(c.backend, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conns.Close)
	return ctl, conns
}

// rbdCLI runs the rbd CLI against the cluster as admin.
func (c *cluster) rbdCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("rbd", append([]string{"-c", c.conf}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rbd %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// uniqueTenant gives each test its own RADOS namespace, removed at the end.
func (c *cluster) uniqueTenant(t testing.TB, prefix string) string {
	tenant := prefix + "-" + strings.ToLower(strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""))
	t.Cleanup(func() {
		exec.Command("rbd", "-c", c.conf, "namespace", "rm", "rbd/"+tenant).Run()
	})
	return tenant
}
