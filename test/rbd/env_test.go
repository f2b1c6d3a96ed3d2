// Package rbdtest runs the rbd backend against the real single-node Ceph started by
// hack/micro-ceph.sh. Tests skip when it is absent, unless SHIPHOLD_REQUIRE_CEPH=1.
package rbdtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
)

type cluster struct {
	conf, keyring, dir string
	backend            *config.Backend
}

// needCeph finds the micro-ceph cluster or skips (fails with SHIPHOLD_REQUIRE_CEPH=1).
func needCeph(t testing.TB) *cluster {
	t.Helper()
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		conf = "/tmp/shiphold-ceph/ceph.conf"
	}
	dir := filepath.Dir(conf)
	c := &cluster{conf: conf, dir: dir, keyring: filepath.Join(dir, "ceph.client.admin.keyring")}
	missing := func(why string) {
		msg := "real Ceph needed: " + why + "; start it with hack/micro-ceph.sh up " + dir
		if os.Getenv("SHIPHOLD_REQUIRE_CEPH") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(conf); err != nil {
		missing(err.Error())
	}
	if _, err := os.Stat(c.keyring); err != nil {
		missing(err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ceph", "-c", conf, "health").CombinedOutput(); err != nil {
		missing("ceph health: " + strings.TrimSpace(string(out)) + " " + err.Error())
	}
	c.backend = &config.Backend{Name: "rbd-test", Kind: backend.KindRBD, RBD: &config.RBD{
		CephCluster: config.CephCluster{
			ClusterID: "micro", Monitors: monitorsOf(conf),
			Credentials: config.CephCredentials{UserID: "admin", KeyringFile: c.keyring},
		},
		Pool: "rbd", Mounter: rbd.MounterFuse,
	}}
	return c
}

// monitorsOf reads the v1 monitor addresses of a ceph.conf: rbd-fuse speaks v1, and a
// cluster may listen on an address of its own (hack/micro-ceph.sh MON_IP).
func monitorsOf(conf string) []string {
	data, _ := os.ReadFile(conf)
	var mons []string
	for _, m := range regexp.MustCompile(`v1:([0-9.]+:[0-9]+)`).FindAllStringSubmatch(string(data), -1) {
		mons = append(mons, m[1])
	}
	if len(mons) == 0 {
		return []string{"127.0.0.1:6789"}
	}
	return mons
}

func (c *cluster) controller(t testing.TB) (*rbd.Controller, *ceph.Pool) {
	t.Helper()
	pool := ceph.NewPool()
	ctl, err := rbd.NewController(c.backend, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return ctl, pool
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
