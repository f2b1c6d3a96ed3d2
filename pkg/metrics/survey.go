package metrics

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
)

// Survey parts, as the part label of the survey's own metrics.
const (
	PartCapacity = "capacity"
	PartTenants  = "tenants"
	PartExports  = "exports"
)

// Survey reads what the storage holds at an interval (free bytes per backend, usage and
// quota per tenant, export clients) and serves its last reading to every scrape: a scrape
// never lists storage. A part that cannot be read keeps its previous reading; its
// last-success timestamp tells how old that is.
type Survey struct {
	ctrls   map[string]backend.Controller
	quotas  config.Tenants
	timeout time.Duration
	now     func() time.Time

	mu       sync.Mutex
	capacity map[string]int64 // by backend
	usage    map[string]*tenant.Usage
	exports  map[string]exportCount // by backend
	success  map[string]time.Time   // by part
	errors   map[string]float64     // by part
	took     float64
}

type exportCount struct{ exports, clients, stale int }

var (
	descAvailable   = desc("backend_available_bytes", "Bytes available for new volumes on the backend, as its last survey read them.", "backend", "kind")
	descTenantBytes = desc("tenant_bytes", "Provisioned bytes of the tenant's volumes across all backends.", "tenant")
	descTenantVols  = desc("tenant_volumes", "Number of the tenant's volumes across all backends.", "tenant")
	descQuotaBytes  = desc("tenant_quota_bytes", "The tenant's capacity quota; absent when unlimited.", "tenant")
	descQuotaVols   = desc("tenant_quota_volumes", "The tenant's volume-count quota; absent when unlimited.", "tenant")
	descExports     = desc("exports", "NFS exports of shiphold volumes on the backend.", "backend")
	descClients     = desc("export_clients", "Client addresses on the backend's exports (the no-access placeholder aside).", "backend")
	descStale       = desc("export_stale_clients", "Export clients no publish accounts for (added by hand, or left by a node gone).", "backend")
	descLastSuccess = desc("survey_last_success_timestamp_seconds", "Unix time of the last complete reading of a survey part.", "part")
	descErrors      = desc("survey_errors_total", "Survey readings of a part that failed.", "part")
	descDuration    = desc("survey_duration_seconds", "How long the last survey took.")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

// NewSurvey registers a survey of ctrls on reg; it reads nothing until Run or Read.
// timeout bounds each backend's part of one reading.
func NewSurvey(reg prometheus.Registerer, ctrls map[string]backend.Controller, quotas config.Tenants, timeout time.Duration) *Survey {
	s := &Survey{
		ctrls: ctrls, quotas: quotas, timeout: timeout, now: time.Now,
		capacity: map[string]int64{}, usage: map[string]*tenant.Usage{}, exports: map[string]exportCount{},
		success: map[string]time.Time{}, errors: map[string]float64{PartCapacity: 0, PartTenants: 0, PartExports: 0},
	}
	if reg != nil {
		reg.MustRegister(s)
	}
	return s
}

// Run reads at once, then every interval until ctx ends.
func (s *Survey) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.Read(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Read takes one reading of every part.
func (s *Survey) Read(ctx context.Context) {
	start := s.now()
	s.readCapacity(ctx)
	s.readTenants(ctx)
	s.readExports(ctx)
	s.mu.Lock()
	s.took = s.now().Sub(start).Seconds()
	s.mu.Unlock()
}

func (s *Survey) readCapacity(ctx context.Context) {
	failed := false
	for _, name := range s.backendNames() {
		bctx, cancel := context.WithTimeout(ctx, s.timeout)
		avail, err := s.ctrls[name].Capacity(bctx, nil)
		cancel()
		if err != nil {
			klog.FromContext(ctx).Error(err, "Survey cannot read free space", "backend", name)
			failed = true
			continue
		}
		s.mu.Lock()
		s.capacity[name] = avail
		s.mu.Unlock()
	}
	s.done(PartCapacity, failed)
}

func (s *Survey) readTenants(ctx context.Context) {
	tctx, cancel := context.WithTimeout(ctx, s.timeout*time.Duration(max(1, len(s.ctrls))))
	defer cancel()
	vols, err := tenant.Volumes(tctx, s.ctrls, "")
	if err != nil {
		klog.FromContext(ctx).Error(err, "Survey cannot add up tenant usage")
		s.done(PartTenants, true)
		return
	}
	usage := map[string]*tenant.Usage{}
	for _, u := range tenant.Summarize(vols, s.quotas) {
		usage[u.Tenant] = u
	}
	// Tenants with a quota of their own show up before their first volume.
	for name := range s.quotas.Overrides {
		if usage[name] == nil {
			usage[name] = &tenant.Usage{Tenant: name, Quota: s.quotas.QuotaFor(name)}
		}
	}
	s.mu.Lock()
	s.usage = usage
	s.mu.Unlock()
	s.done(PartTenants, false)
}

func (s *Survey) readExports(ctx context.Context) {
	failed := false
	for _, name := range s.backendNames() {
		auditor, ok := s.ctrls[name].(backend.ExportAuditor)
		if !ok {
			continue
		}
		ectx, cancel := context.WithTimeout(ctx, s.timeout)
		list, err := auditor.ExportClients(ectx)
		cancel()
		if err != nil {
			klog.FromContext(ctx).Error(err, "Survey cannot read export clients", "backend", name)
			failed = true
			continue
		}
		var n exportCount
		for _, e := range list {
			n.exports++
			n.clients += len(e.Clients)
			n.stale += len(e.Stale)
		}
		s.mu.Lock()
		s.exports[name] = n
		s.mu.Unlock()
	}
	s.done(PartExports, failed)
}

func (s *Survey) done(part string, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failed {
		s.errors[part]++
		return
	}
	s.success[part] = s.now()
}

func (s *Survey) backendNames() []string {
	names := make([]string, 0, len(s.ctrls))
	for n := range s.ctrls {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Describe implements prometheus.Collector.
func (s *Survey) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAvailable, descTenantBytes, descTenantVols, descQuotaBytes, descQuotaVols,
		descExports, descClients, descStale, descLastSuccess, descErrors, descDuration} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the last reading only.
func (s *Survey) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for name, avail := range s.capacity {
		gauge(descAvailable, float64(avail), name, s.ctrls[name].Kind())
	}
	for name, u := range s.usage {
		gauge(descTenantBytes, float64(u.Bytes), name)
		gauge(descTenantVols, float64(u.Volumes), name)
		if u.Quota.MaxBytes > 0 {
			gauge(descQuotaBytes, float64(u.Quota.MaxBytes), name)
		}
		if u.Quota.MaxVolumes > 0 {
			gauge(descQuotaVols, float64(u.Quota.MaxVolumes), name)
		}
	}
	for name, n := range s.exports {
		gauge(descExports, float64(n.exports), name)
		gauge(descClients, float64(n.clients), name)
		gauge(descStale, float64(n.stale), name)
	}
	for part, at := range s.success {
		gauge(descLastSuccess, float64(at.UnixNano())/1e9, part)
	}
	for part, n := range s.errors {
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, n, part)
	}
	gauge(descDuration, s.took)
}
