package opstest

import (
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// wantCheck asserts one plugin run: exit code and fragments of its single line.
func wantCheck(t *testing.T, cfg string, code int, fragments []string, args ...string) {
	t.Helper()
	got, out := runCheck(t, cfg, args...)
	if got != code {
		t.Fatalf("check %v: exit %d, want %d: %s", args, got, code, out)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("check %v: not one status line: %q", args, out)
	}
	for _, f := range fragments {
		if !strings.Contains(out, f) {
			t.Fatalf("check %v: output lacks %q: %s", args, f, out)
		}
	}
}

// TestCheckRealBackends runs the Nagios plugin against a private Ceph (RBD) and the OneFS
// simulator: every check in each of its states, a frozen monitor and a stopped array as
// CRITICAL naming the backend, and a hand-added export client as WARNING.
func TestCheckRealBackends(t *testing.T) {
	pc := harness.StartPrivateCeph(t)
	sim := harness.StartOneFS(t)
	cfg := &config.Config{
		Backends: []config.Backend{
			{Name: "ceph-rbd", Kind: "rbd", Section: &rbd.Config{Cluster: pc.Cluster, Pool: "rbd"}},
			sim.Backend(t, "isilon"),
		},
		Tenants: config.Tenants{Overrides: map[string]config.TenantQuota{"shop": {MaxBytes: 100 << 20, MaxVolumes: 10}}},
	}
	path := writeConfig(t, cfg)
	b, err := registry.Open(cfg, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := ctxT(t, 5*time.Minute)
	// shop holds 85 of its 100 MiB: over the default warning (80 %), under critical (90 %).
	if _, err := b.Controllers["ceph-rbd"].CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-db", Tenant: "shop", RequiredBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	media, err := b.Controllers["isilon"].CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-media", Tenant: "shop", RequiredBytes: 21 << 20})
	if err != nil {
		t.Fatal(err)
	}
	isi := b.Controllers["isilon"].(*isilon.Controller)
	if _, err := isi.PublishVolume(ctx, media.ID, backend.Node{Name: "node-1", Address: "10.0.0.1"}, backend.PublishAccess{}, media.Context, nil); err != nil {
		t.Fatal(err)
	}

	wantCheck(t, path, 0, []string{"SHIPHOLD BACKENDS OK - 2 of 2 backends reachable", "'ceph-rbd_up'=1;;;0;1", "'isilon_up'=1;;;0;1"}, "backends")
	wantCheck(t, path, 0, []string{"SHIPHOLD CAPACITY OK - ", "'ceph-rbd_free'=", "'isilon_free'="}, "capacity", "-w", "1Mi:", "-c", "1Ki:")
	wantCheck(t, path, 2, []string{"SHIPHOLD CAPACITY CRITICAL - ceph-rbd", "(CRITICAL below 1Pi:)"}, "capacity", "-c", "1Pi:")
	wantCheck(t, path, 1, []string{"SHIPHOLD TENANTS WARNING - shop at 85% of its quota (85.0 MiB of 100.0 MiB, 2 of 10 volumes)", "'shop'=85%;80;90;0;100"}, "tenants")
	wantCheck(t, path, 2, []string{"SHIPHOLD TENANTS CRITICAL - shop at 85%"}, "tenants", "-c", "84")
	wantCheck(t, path, 0, []string{"SHIPHOLD TENANTS OK - 1 tenants, 1 with a quota, all below 86% of it"}, "tenants", "-w", "86")
	wantCheck(t, path, 0, []string{"SHIPHOLD EXPORTS OK - 1 exports on 1 backends", "'isilon_clients'=1;;;0 'isilon_stale'=0;0;;0"}, "exports")

	// An address added by hand at the array: no publish accounts for it.
	onefsPUT(t, sim.URL+"/platform/2/protocols/nfs/exports/"+media.Context[isilon.CtxExportID], `{"clients":["10.0.0.1","10.9.9.9"]}`)
	wantCheck(t, path, 1, []string{"SHIPHOLD EXPORTS WARNING - 1 stale clients: 10.9.9.9 on export " + media.Context[isilon.CtxExportID], "'isilon_clients'=2;;;0 'isilon_stale'=1;0;;0"}, "exports")

	// The monitor frozen: the probe gets no answer within --timeout.
	resume := pc.Freeze(t, harness.DaemonMon)
	start := time.Now()
	wantCheck(t, path, 2, []string{"SHIPHOLD BACKENDS CRITICAL - 1 of 2 backends unreachable: ceph-rbd (rbd): ", "'ceph-rbd_up'=0;;;0;1", "'isilon_up'=1;;;0;1"}, "backends", "--timeout", "3s")
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the check of a frozen monitor took %s with --timeout 3s", took)
	}
	wantCheck(t, path, 3, []string{"SHIPHOLD CAPACITY UNKNOWN - ceph-rbd: free space unknown"}, "capacity", "--timeout", "3s")
	resume()
	wantCheck(t, path, 0, []string{"SHIPHOLD BACKENDS OK - 2 of 2 backends reachable"}, "backends", "--timeout", "20s")

	// The array stopped: the Platform API refuses connections.
	sim.Server.Close()
	wantCheck(t, path, 2, []string{"SHIPHOLD BACKENDS CRITICAL - 1 of 2 backends unreachable: isilon (isilon): "}, "backends")
	wantCheck(t, path, 3, []string{"SHIPHOLD EXPORTS UNKNOWN - cannot read exports of isilon"}, "exports")
}
