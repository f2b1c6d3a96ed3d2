package check

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// storage is a fake backend: the embedded nil Controller panics on calls the checks must
// not make.
type storage struct {
	backend.Controller
	kind    string
	down    error
	hang    bool // Probe and Capacity never return, as with a frozen monitor
	avail   int64
	vols    []*backend.Volume
	exports []backend.ExportClients
}

func (s *storage) Kind() string { return s.kind }
func (s *storage) Probe(ctx context.Context) error {
	if s.hang {
		select {} // ignores its context, like a call stuck in librados
	}
	return s.down
}
func (s *storage) Capacity(context.Context, map[string]string) (int64, error) {
	if s.hang {
		select {}
	}
	return s.avail, s.down
}
func (s *storage) ListVolumes(_ context.Context, tenant string) ([]*backend.Volume, error) {
	var out []*backend.Volume
	for _, v := range s.vols {
		if tenant == "" || v.ID.Tenant == tenant {
			out = append(out, v)
		}
	}
	return out, s.down
}

// exporter is a fake Isilon: storage that also reports export clients.
type exporter struct{ *storage }

func (e exporter) ExportClients(context.Context) ([]backend.ExportClients, error) {
	return e.exports, e.down
}

func vol(b, tenant, name string, size int64) *backend.Volume {
	return &backend.Volume{ID: volid.Volume{Backend: b, Tenant: tenant, Hash: volid.Hash(name)}, CapacityBytes: size}
}

func thresholds(t *testing.T, w, c string) Thresholds {
	t.Helper()
	wr, err := ParseRange(w)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := ParseRange(c)
	if err != nil {
		t.Fatal(err)
	}
	return Thresholds{Warn: wr, Crit: cr}
}

// line writes r and checks the plugin format: one line, the exit code matching the state.
func line(t *testing.T, r Result, name string, want Status) string {
	t.Helper()
	var buf bytes.Buffer
	code := r.Write(&buf, name)
	out := buf.String()
	if code != int(want) || r.Status != want {
		t.Fatalf("exit %d (%s), want %d (%s): %s", code, r.Status, want, want, out)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("not exactly one line: %q", out)
	}
	prefix := "SHIPHOLD " + strings.ToUpper(name) + " " + want.String() + " - "
	if !strings.HasPrefix(out, prefix) {
		t.Fatalf("status line %q does not start with %q", out, prefix)
	}
	if strings.Count(out, "|") > 1 {
		t.Fatalf("more than one perf separator: %q", out)
	}
	return strings.TrimSuffix(out, "\n")
}

func TestParseRange(t *testing.T) {
	testCases := []struct {
		in      string
		alerts  []float64
		quiet   []float64
		perf    string
		wantErr bool
	}{
		{in: "10", alerts: []float64{-1, 10.5, 11}, quiet: []float64{0, 10}, perf: "10"},
		{in: "10:", alerts: []float64{9.9, -5}, quiet: []float64{10, 1e9}, perf: "10:"},
		{in: "~:10", alerts: []float64{11}, quiet: []float64{-1e9, 10}, perf: "~:10"},
		{in: "10:20", alerts: []float64{9, 21}, quiet: []float64{10, 15, 20}, perf: "10:20"},
		{in: "@10:20", alerts: []float64{10, 15, 20}, quiet: []float64{9, 21}, perf: "@10:20"},
		{in: "100Gi:", alerts: []float64{100<<30 - 1}, quiet: []float64{100 << 30}, perf: "107374182400:"},
		{in: "2G:", alerts: []float64{1.9e9}, quiet: []float64{2e9}, perf: "2000000000:"},
		{in: "90%", alerts: []float64{90.1}, quiet: []float64{89, 90}, perf: "90"},
		{in: "0", alerts: []float64{1}, quiet: []float64{0}, perf: "0"},
		{in: "20:10", wantErr: true},
		{in: "ten", wantErr: true},
		{in: "5:x", wantErr: true},
		{in: "Gi", wantErr: true},
	}
	for _, tc := range testCases {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRange(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted %q as %+v", tc.in, r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.alerts {
				if !r.Alerts(v) {
					t.Errorf("%g does not alert", v)
				}
			}
			for _, v := range tc.quiet {
				if r.Alerts(v) {
					t.Errorf("%g alerts", v)
				}
			}
			if got := r.Perf(); got != tc.perf {
				t.Errorf("Perf() = %q, want %q", got, tc.perf)
			}
		})
	}
	if r, err := ParseRange(""); r != nil || err != nil || r.Alerts(math.Inf(1)) {
		t.Fatalf("empty threshold: %v %v", r, err)
	}
}

func TestBackends(t *testing.T) {
	refused := errors.New("https://isi:8080: connection refused")
	testCases := []struct {
		name     string
		ctrls    map[string]backend.Controller
		th       Thresholds
		want     Status
		contains []string
	}{
		{name: "all reachable", want: OK, th: Thresholds{Crit: mustRange("0")},
			ctrls:    map[string]backend.Controller{"rbd": &storage{kind: "rbd"}, "isi": &storage{kind: "isilon"}},
			contains: []string{"2 of 2 backends reachable", "'isi_up'=1;;;0;1", "'rbd_up'=1;;;0;1", "'unreachable'=0;;0;0;2"}},
		{name: "one refused", want: Critical, th: Thresholds{Crit: mustRange("0")},
			ctrls:    map[string]backend.Controller{"rbd": &storage{kind: "rbd"}, "isi": &storage{kind: "isilon", down: refused}},
			contains: []string{"1 of 2 backends unreachable: isi (isilon): https://isi:8080: connection refused", "'isi_up'=0;;;0;1", "'unreachable'=1;;0;0;2"}},
		{name: "one hung is cut at the timeout", want: Critical, th: Thresholds{Crit: mustRange("0")},
			ctrls:    map[string]backend.Controller{"rbd": &storage{kind: "rbd", hang: true}, "isi": &storage{kind: "isilon"}},
			contains: []string{"rbd (rbd): no answer within 200ms", "'rbd_up'=0;;;0;1"}},
		{name: "one down under a warning-only threshold", want: Warning, th: Thresholds{Warn: mustRange("0"), Crit: mustRange("1")},
			ctrls:    map[string]backend.Controller{"a": &storage{kind: "rbd", down: refused}, "b": &storage{kind: "rbd"}},
			contains: []string{"1 of 2 backends unreachable: a (rbd)"}},
		{name: "none configured", want: Unknown, ctrls: map[string]backend.Controller{}, contains: []string{"no backends in the config"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out := line(t, Backends(context.Background(), tc.ctrls, tc.th, 200*time.Millisecond), "backends", tc.want)
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("took %s", took)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	ctrls := map[string]backend.Controller{
		"rbd":    &storage{kind: "rbd", avail: 50 << 30},
		"isilon": &storage{kind: "isilon", avail: 3 << 40},
	}
	testCases := []struct {
		name, w, c string
		ctrls      map[string]backend.Controller
		want       Status
		contains   []string
	}{
		{name: "above both", w: "20Gi:", c: "10Gi:", ctrls: ctrls, want: OK,
			contains: []string{"isilon 3.0 TiB free, rbd 50.0 GiB free", "'rbd_free'=53687091200B;21474836480:;10737418240:;0"}},
		{name: "below warning", w: "100Gi:", c: "10Gi:", ctrls: ctrls, want: Warning,
			contains: []string{"rbd 50.0 GiB free (WARNING below 100Gi:)", "isilon 3.0 TiB free"}},
		{name: "below critical", w: "100Gi:", c: "60Gi:", ctrls: ctrls, want: Critical,
			contains: []string{"rbd 50.0 GiB free (CRITICAL below 60Gi:)"}},
		{name: "no thresholds report only", ctrls: ctrls, want: OK, contains: []string{"'isilon_free'=3298534883328B;;;0"}},
		{name: "unreadable backend is unknown", w: "1Gi:", ctrls: map[string]backend.Controller{
			"rbd": &storage{kind: "rbd", down: errors.New("mon stat: timed out")}, "isilon": ctrls["isilon"]}, want: Unknown,
			contains: []string{"rbd: free space unknown: mon stat: timed out"}},
		{name: "critical beats unknown", c: "4Ti:", ctrls: map[string]backend.Controller{
			"rbd": &storage{kind: "rbd", down: errors.New("down")}, "isilon": ctrls["isilon"]}, want: Critical},
		{name: "a bare number is refused", c: "10Gi", ctrls: ctrls, want: Unknown, contains: []string{"write 10Gi: (with the colon)"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			out := line(t, Capacity(context.Background(), tc.ctrls, thresholds(t, tc.w, tc.c), time.Second), "capacity", tc.want)
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestTenants(t *testing.T) {
	quotas := config.Tenants{Overrides: map[string]config.TenantQuota{
		"shop": {MaxBytes: 10 << 30},
		"blog": {MaxVolumes: 4},
	}}
	ctrls := map[string]backend.Controller{
		"rbd": &storage{kind: "rbd", vols: []*backend.Volume{vol("rbd", "shop", "db", 6<<30), vol("rbd", "blog", "wp", 1<<30), vol("rbd", "free", "x", 100<<30)}},
		"isi": &storage{kind: "isilon", vols: []*backend.Volume{vol("isi", "shop", "media", 2<<30), vol("isi", "blog", "up", 1<<20)}},
	}
	testCases := []struct {
		name, w, c, only string
		want             Status
		contains         []string
		lacks            []string
	}{
		{name: "shop at 80 of 90", w: "70", c: "90", want: Warning,
			contains: []string{"shop at 80% of its quota (8.0 GiB of 10.0 GiB); 3 tenants, 2 with a quota", "'shop'=80%;70;90;0;100", "'blog'=50%;70;90;0;100"},
			lacks:    []string{"'free'"}},
		{name: "shop critical", w: "60", c: "75", want: Critical, contains: []string{"shop at 80% of its quota"}},
		{name: "all fine", w: "85", c: "95", want: OK, contains: []string{"3 tenants, 2 with a quota, all below 85% of it"}},
		{name: "volume count counts", w: "40", c: "95", only: "blog", want: Warning,
			contains: []string{"blog at 50% of its quota (2 of 4 volumes); 1 tenants, 1 with a quota"}, lacks: []string{"shop"}},
		{name: "listing fails", w: "80", c: "90", want: Unknown, contains: []string{"cannot add up tenant usage"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			cs := ctrls
			if tc.want == Unknown {
				cs = map[string]backend.Controller{"rbd": &storage{down: errors.New("refused")}}
			}
			out := line(t, Tenants(context.Background(), cs, quotas, thresholds(t, tc.w, tc.c), tc.only), "tenants", tc.want)
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.lacks {
				if strings.Contains(out, s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestExports(t *testing.T) {
	v := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("media")}
	clean := []backend.ExportClients{{Volume: v, ExportID: 7, Clients: []string{"10.0.0.1", "10.0.0.2"}}}
	stale := []backend.ExportClients{clean[0], {Volume: v, ExportID: 8, Clients: []string{"10.0.0.1", "10.9.9.9"}, Stale: []string{"10.9.9.9"}}}
	testCases := []struct {
		name     string
		ctrls    map[string]backend.Controller
		th       Thresholds
		want     Status
		contains []string
	}{
		{name: "no stale", th: DefaultExportThresholds, want: OK,
			ctrls:    map[string]backend.Controller{"isi": exporter{&storage{exports: clean}}, "rbd": &storage{}},
			contains: []string{"1 exports on 1 backends", "'isi_exports'=1;;;0 'isi_clients'=2;;;0 'isi_stale'=0;0;;0"}},
		{name: "one stale", th: DefaultExportThresholds, want: Warning,
			ctrls:    map[string]backend.Controller{"isi": exporter{&storage{exports: stale}}},
			contains: []string{"1 stale clients: 10.9.9.9 on export 8 (v1:isi:shop::" + v.Hash + ")", "'isi_stale'=1;0;;0"}},
		{name: "stale over critical", th: Thresholds{Warn: mustRange("0"), Crit: mustRange("0")}, want: Critical,
			ctrls: map[string]backend.Controller{"isi": exporter{&storage{exports: stale}}}},
		{name: "unreadable", th: DefaultExportThresholds, want: Unknown,
			ctrls:    map[string]backend.Controller{"isi": exporter{&storage{down: errors.New("401 unauthorized")}}},
			contains: []string{"cannot read exports of isi: 401 unauthorized"}},
		{name: "no exporting backend", th: DefaultExportThresholds, want: OK,
			ctrls: map[string]backend.Controller{"rbd": &storage{}}, contains: []string{"no configured backend exports volumes"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			out := line(t, Exports(context.Background(), tc.ctrls, tc.th), "exports", tc.want)
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestWriteKeepsOneLine(t *testing.T) {
	r := Result{Status: Critical, Summary: "a\nb | c", Perf: []Perf{{Label: "it's", Value: 1.5, UOM: "s"}}}
	out := line(t, r, "backends", Critical)
	if out != "SHIPHOLD BACKENDS CRITICAL - a b / c | 'its'=1.5s" {
		t.Fatalf("%q", out)
	}
}
