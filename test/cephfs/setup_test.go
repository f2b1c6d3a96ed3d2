// Package cephfstest runs the cephfs backend against the real single-node Ceph of
// hack/micro-ceph.sh. Every test here needs Ceph: it skips when the cluster is absent, or
// fails under SHIPHOLD_REQUIRE_STACK=1 (make test).
package cephfstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

const fsName = "cephfs"

type env struct {
	cfg   *config.Backend
	conns *ceph.Connections
	ctrl  *cephfs.Controller
	stg   *cephfs.Stager
}

// needCeph connects to the local cluster found by the harness: a missing or silent cluster
// is a missing prerequisite (harness.Require: skip, or fail under SHIPHOLD_REQUIRE_STACK=1).
func needCeph(t testing.TB) *env {
	t.Helper()
	cluster := harness.LocalCeph(t)
	cfg := &config.Backend{Name: "cephfs-test", Kind: backend.KindCephFS, Section: &cephfs.Config{
		Cluster:              cluster,
		FSName:               fsName,
		SubvolumeGroupPrefix: fmt.Sprintf("sht%04d-", rand.Intn(10000)),
		Mounter:              cephfs.MounterAuto,
	}}
	conns := ceph.NewConnections()
	t.Cleanup(conns.Close)
	ctrl, err := cephfs.NewController(cfg, conns)
	if err != nil {
		t.Fatal(err)
	}
	// A missing cluster fails at once; a busy one (make test runs four packages against
	// it, the mgr purging their trash) may take long to answer, and is still there.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = ctrl.Probe(ctx)
	harness.Require(t, "CephFS "+fsName+" on the local Ceph", err == nil,
		fmt.Sprintf("probe: %v; hack/micro-ceph.sh up %s creates it", err, harness.CephDir()))
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
		// Back off as a CO does: a loop without pause sent the mgr 60 creates a second
		// while it purged, which the other packages sharing CI's cluster paid for.
		time.Sleep(min(time.Duration(pendings)*20*time.Millisecond, time.Second))
	}
}

func isCode(err error, c backend.Code) bool {
	var se *backend.StorageError
	return errors.As(err, &se) && se.Code == c
}
