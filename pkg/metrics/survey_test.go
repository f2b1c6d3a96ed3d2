package metrics

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// storage is a fake backend counting the storage calls the survey makes; the embedded nil
// Controller panics on any other call.
type storage struct {
	backend.Controller
	kind  string
	avail int64
	vols  []*backend.Volume
	fail  atomic.Bool
	calls atomic.Int64
}

func (s *storage) Kind() string { return s.kind }
func (s *storage) Capacity(context.Context, map[string]string) (int64, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return 0, errors.New("mon stat: timed out")
	}
	return s.avail, nil
}
func (s *storage) ListVolumes(context.Context, string) ([]*backend.Volume, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, errors.New("mon stat: timed out")
	}
	return s.vols, nil
}

type exporter struct {
	*storage
	exports []backend.ExportClients
}

func (e exporter) ExportClients(context.Context) ([]backend.ExportClients, error) {
	e.calls.Add(1)
	return e.exports, nil
}

func vol(b, tenant, name string, size int64) *backend.Volume {
	return &backend.Volume{ID: volid.Volume{Backend: b, Tenant: tenant, Hash: volid.Hash(name)}, CapacityBytes: size}
}

func TestSurvey(t *testing.T) {
	rbd := &storage{kind: "rbd", avail: 9 << 30, vols: []*backend.Volume{vol("ceph-rbd", "shop", "db", 2<<30), vol("ceph-rbd", "blog", "wp", 1<<30)}}
	isiStore := &storage{kind: "isilon", avail: 1 << 40, vols: []*backend.Volume{vol("isilon", "shop", "media", 1<<30)}}
	isi := exporter{storage: isiStore, exports: []backend.ExportClients{
		{ExportID: 1, Clients: []string{"10.0.0.1", "10.0.0.2"}},
		{ExportID: 2, Clients: []string{"10.0.0.1", "10.9.9.9"}, Stale: []string{"10.9.9.9"}},
	}}
	quotas := config.Tenants{Default: config.TenantQuota{MaxVolumes: 50}, Overrides: map[string]config.TenantQuota{
		"shop": {MaxBytes: 10 << 30, MaxVolumes: 5}, "new": {MaxBytes: 1 << 30}}}
	reg := prometheus.NewPedanticRegistry()
	s := NewSurvey(reg, map[string]backend.Controller{"ceph-rbd": rbd, "isilon": isi}, quotas, time.Second)
	s.now = func() time.Time { return time.Unix(1700000000, 0) }
	s.Read(context.Background())
	calls := rbd.calls.Load() + isiStore.calls.Load()

	want := `
# HELP shiphold_backend_available_bytes Bytes available for new volumes on the backend, as its last survey read them.
# TYPE shiphold_backend_available_bytes gauge
shiphold_backend_available_bytes{backend="ceph-rbd",kind="rbd"} 9.663676416e+09
shiphold_backend_available_bytes{backend="isilon",kind="isilon"} 1.099511627776e+12
# HELP shiphold_export_clients Client addresses on the backend's exports (the no-access placeholder aside).
# TYPE shiphold_export_clients gauge
shiphold_export_clients{backend="isilon"} 4
# HELP shiphold_export_stale_clients Export clients no publish accounts for (added by hand, or left by a node gone).
# TYPE shiphold_export_stale_clients gauge
shiphold_export_stale_clients{backend="isilon"} 1
# HELP shiphold_exports NFS exports of shiphold volumes on the backend.
# TYPE shiphold_exports gauge
shiphold_exports{backend="isilon"} 2
# HELP shiphold_tenant_bytes Provisioned bytes of the tenant's volumes across all backends.
# TYPE shiphold_tenant_bytes gauge
shiphold_tenant_bytes{tenant="blog"} 1.073741824e+09
shiphold_tenant_bytes{tenant="new"} 0
shiphold_tenant_bytes{tenant="shop"} 3.221225472e+09
# HELP shiphold_tenant_quota_bytes The tenant's capacity quota; absent when unlimited.
# TYPE shiphold_tenant_quota_bytes gauge
shiphold_tenant_quota_bytes{tenant="new"} 1.073741824e+09
shiphold_tenant_quota_bytes{tenant="shop"} 1.073741824e+10
# HELP shiphold_tenant_quota_volumes The tenant's volume-count quota; absent when unlimited.
# TYPE shiphold_tenant_quota_volumes gauge
shiphold_tenant_quota_volumes{tenant="blog"} 50
shiphold_tenant_quota_volumes{tenant="shop"} 5
# HELP shiphold_tenant_volumes Number of the tenant's volumes across all backends.
# TYPE shiphold_tenant_volumes gauge
shiphold_tenant_volumes{tenant="blog"} 1
shiphold_tenant_volumes{tenant="new"} 0
shiphold_tenant_volumes{tenant="shop"} 2
`
	names := []string{"shiphold_backend_available_bytes", "shiphold_export_clients", "shiphold_export_stale_clients", "shiphold_exports",
		"shiphold_tenant_bytes", "shiphold_tenant_quota_bytes", "shiphold_tenant_quota_volumes", "shiphold_tenant_volumes"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// Scrapes serve the reading: no storage call.
	for range 3 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if got := rbd.calls.Load() + isiStore.calls.Load(); got != calls {
		t.Fatalf("three scrapes made %d storage calls", got-calls)
	}

	// A backend down: the last good readings stay, the failures are counted, the
	// timestamps of the failed parts do not move.
	rbd.fail.Store(true)
	s.now = func() time.Time { return time.Unix(1700000300, 0) }
	s.Read(context.Background())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatalf("after a failed reading: %v", err)
	}
	wantSurvey := `
# HELP shiphold_survey_errors_total Survey readings of a part that failed.
# TYPE shiphold_survey_errors_total counter
shiphold_survey_errors_total{part="capacity"} 1
shiphold_survey_errors_total{part="exports"} 0
shiphold_survey_errors_total{part="tenants"} 1
# HELP shiphold_survey_last_success_timestamp_seconds Unix time of the last complete reading of a survey part.
# TYPE shiphold_survey_last_success_timestamp_seconds gauge
shiphold_survey_last_success_timestamp_seconds{part="capacity"} 1.7e+09
shiphold_survey_last_success_timestamp_seconds{part="exports"} 1.7000003e+09
shiphold_survey_last_success_timestamp_seconds{part="tenants"} 1.7e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantSurvey), "shiphold_survey_errors_total", "shiphold_survey_last_success_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
}

// TestSurveyRunStops: Run reads at once and at each interval, and returns when its
// context ends.
func TestSurveyRunStops(t *testing.T) {
	rbd := &storage{kind: "rbd", avail: 1}
	s := NewSurvey(nil, map[string]backend.Controller{"r": rbd}, config.Tenants{}, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, 10*time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for rbd.calls.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if rbd.calls.Load() < 6 {
		t.Fatalf("%d storage calls in 5 s at a 10 ms interval", rbd.calls.Load())
	}
}
