// Package cephfstest runs the cephfs backend against the real single-node Ceph of
// hack/micro-ceph.sh. Every test here needs Ceph: it skips when the cluster is absent, or
// fails when SHIPHOLD_REQUIRE_CEPH=1.
package cephfstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
)

const fsName = "cephfs"

type env struct {
	cfg   *config.Backend
	conns *ceph.Pool
	ctrl  *cephfs.Controller
	stg   *cephfs.Stager
}

var v1Addr = regexp.MustCompile(`v1:([0-9.]+:[0-9]+)`)

// readConf pulls the fsid and v1 monitor addresses from a ceph.conf.
func readConf(path string) (fsid string, mons []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.ReplaceAll(strings.TrimSpace(k), "_", " ") {
		case "fsid":
			fsid = strings.TrimSpace(v)
		case "mon host":
			for _, m := range v1Addr.FindAllStringSubmatch(v, -1) {
				mons = append(mons, m[1])
			}
			if len(mons) == 0 {
				for _, m := range strings.Split(v, ",") {
					mons = append(mons, strings.Trim(strings.TrimSpace(m), "[]"))
				}
			}
		}
	}
	if fsid == "" || len(mons) == 0 {
		return "", nil, fmt.Errorf("%s has no fsid or mon host", path)
	}
	return fsid, mons, sc.Err()
}

// needCeph connects to the test cluster or skips (fails with SHIPHOLD_REQUIRE_CEPH=1).
func needCeph(t testing.TB) *env {
	t.Helper()
	confPath := os.Getenv("CEPH_CONF")
	if confPath == "" {
		confPath = "/tmp/shiphold-ceph/ceph.conf"
	}
	absent := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("SHIPHOLD_REQUIRE_CEPH") == "1" {
			t.Fatalf("Ceph required (SHIPHOLD_REQUIRE_CEPH=1) but not usable: %s; start it with hack/micro-ceph.sh up /tmp/shiphold-ceph", msg)
		}
		t.Skipf("no Ceph test cluster: %s", msg)
	}
	fsid, mons, err := readConf(confPath)
	if err != nil {
		absent("%v", err)
	}
	keyring := filepath.Join(filepath.Dir(confPath), "ceph.client.admin.keyring")
	if _, err := os.Stat(keyring); err != nil {
		absent("%v", err)
	}
	cfg := &config.Backend{Name: "cephfs-test", Kind: backend.KindCephFS, CephFS: &config.CephFS{
		CephCluster: config.CephCluster{ClusterID: fsid, Monitors: mons,
			Credentials: config.CephCredentials{UserID: "admin", KeyringFile: keyring}},
		FSName:               fsName,
		SubvolumeGroupPrefix: fmt.Sprintf("sht%04d-", rand.Intn(10000)),
		Mounter:              cephfs.MounterAuto,
	}}
	conns := ceph.NewPool()
	t.Cleanup(conns.Close)
	ctrl, err := cephfs.NewController(cfg, conns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := ctrl.Probe(ctx); err != nil {
		absent("probe: %v", err)
	}
	stg, err := cephfs.NewStager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{cfg: cfg, conns: conns, ctrl: ctrl, stg: stg}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createRetrying calls CreateVolume until a clone finishes (Pending means retry).
func (e *env) createRetrying(t testing.TB, req *backend.VolumeRequest) *backend.Volume {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	pendings := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := e.ctrl.CreateVolume(ctx, req)
		cancel()
		if err == nil {
			t.Logf("CreateVolume %s: done after %d pending answers", req.Name, pendings)
			return v
		}
		// A CO retries a pending clone and a call that ran out of time alike.
		retry := backend.CodeOf(err) == backend.Pending || errors.Is(err, context.DeadlineExceeded)
		if !retry || time.Now().After(deadline) {
			t.Fatalf("CreateVolume %s: %v (code %v)", req.Name, err, backend.CodeOf(err))
		}
		pendings++
	}
}

func isCode(err error, c backend.Code) bool {
	var se *backend.StorageError
	return errors.As(err, &se) && se.Code == c
}
