package manifests

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var monitoringOn = map[string]any{"metrics": map[string]any{
	"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus"}},
	"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus"}},
}}

func TestChartMonitoringBehindFlags(t *testing.T) {
	for _, o := range chartObjects(t, nil) {
		if o.GVK.Group == monitoringv1.SchemeGroupVersion.Group {
			t.Errorf("default values render %s/%s; the Prometheus Operator objects need their flag", o.GVK.Kind, o.Obj.(metav1.Object).GetName())
		}
	}
}

// TestChartServiceMonitor: the ServiceMonitor selects exactly the two metrics Services, on a
// port they have.
func TestChartServiceMonitor(t *testing.T) {
	objs := chartObjects(t, monitoringOn)
	sm := byKey(t, objs)["ServiceMonitor/shiphold"].Obj.(*monitoringv1.ServiceMonitor)
	if sm.Labels["release"] != "kube-prometheus" {
		t.Errorf("ServiceMonitor labels %v lack the values' labels", sm.Labels)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	var selected []string
	for _, o := range objs {
		svc, ok := o.Obj.(*corev1.Service)
		if !ok || !sel.Matches(labels.Set(svc.Labels)) {
			continue
		}
		selected = append(selected, svc.Name)
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("Service %s has no port %q", svc.Name, ep.Port)
			}
		}
	}
	sort.Strings(selected)
	if !slices.Equal(selected, []string{"shiphold-controller-metrics", "shiphold-node-metrics"}) {
		t.Errorf("ServiceMonitor selects %v", selected)
	}
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor spec %+v", sm.Spec)
	}
}

// alertRules renders the PrometheusRule and returns its alerts by name; every expression
// must parse as PromQL and use only metrics pkg/metrics exports.
func alertRules(t *testing.T, vals map[string]any) map[string]monitoringv1.Rule {
	t.Helper()
	pr := byKey(t, chartObjects(t, vals))["PrometheusRule/shiphold"].Obj.(*monitoringv1.PrometheusRule)
	out := map[string]monitoringv1.Rule{}
	name := regexp.MustCompile(`shiphold_[a-z_]+`)
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			expr := exprOf(r)
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(expr); err != nil {
				t.Errorf("alert %s: %v\n%s", r.Alert, err, expr)
			}
			for _, m := range name.FindAllString(expr, -1) {
				if !shipholdMetrics[m] {
					t.Errorf("alert %s uses %s, which pkg/metrics does not export", r.Alert, m)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s lacks a severity or a summary", r.Alert)
			}
			out[r.Alert] = r
		}
	}
	return out
}

// series is what a cluster with trouble on every front scrapes: two controller replicas
// (pod a, b) report the same survey; isilon stopped answering at minute 5; shop is at 95 %
// of its byte quota, blog at 92 % of its volume quota, web at 50 %; one CreateVolume in 11
// fails with Internal; the tenant survey last succeeded at minute 1.
const series = `
load 1m
  shiphold_backend_up{backend="ceph-rbd",kind="rbd",pod="a"} 1x30
  shiphold_backend_up{backend="ceph-rbd",kind="rbd",pod="b"} 1x30
  shiphold_backend_up{backend="isilon",kind="isilon",pod="a"} 1 1 1 1 1 0x25
  shiphold_backend_up{backend="isilon",kind="isilon",pod="b"} 1 1 1 1 1 0x25
  shiphold_tenant_bytes{tenant="shop",pod="a"} 9961472x30
  shiphold_tenant_bytes{tenant="shop",pod="b"} 9961472x30
  shiphold_tenant_quota_bytes{tenant="shop",pod="a"} 10485760x30
  shiphold_tenant_quota_bytes{tenant="shop",pod="b"} 10485760x30
  shiphold_tenant_volumes{tenant="blog",pod="a"} 23x30
  shiphold_tenant_quota_volumes{tenant="blog",pod="a"} 25x30
  shiphold_tenant_bytes{tenant="web",pod="a"} 5x30
  shiphold_tenant_quota_bytes{tenant="web",pod="a"} 10x30
  shiphold_csi_operations_total{backend="ceph-rbd",operation="CreateVolume",grpc_code="OK",pod="a"} 0+10x30
  shiphold_csi_operations_total{backend="ceph-rbd",operation="CreateVolume",grpc_code="Internal",pod="a"} 0+1x30
  shiphold_csi_operations_total{backend="ceph-rbd",operation="DeleteVolume",grpc_code="OK",pod="a"} 0+10x30
  shiphold_csi_operations_total{backend="ceph-rbd",operation="DeleteVolume",grpc_code="Aborted",pod="a"} 0+5x30
  shiphold_export_stale_clients{backend="isilon",pod="a"} 2x30
  shiphold_export_stale_clients{backend="isilon",pod="b"} 2x30
  shiphold_survey_last_success_timestamp_seconds{part="tenants",pod="a"} 60x30
  shiphold_survey_last_success_timestamp_seconds{part="capacity",pod="a"} 0+60x30
`

// TestPrometheusRuleAlertsFire evaluates each alert's expression with the PromQL engine on
// the series above: it fires for exactly the troubled backend, tenants, operation and
// survey part, once each although two replicas report.
func TestPrometheusRuleAlertsFire(t *testing.T) {
	rules := alertRules(t, monitoringOn)
	storage := promqltest.LoadedStorage(t, series)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1e6)
	at := time.Unix(0, 0).Add(25 * time.Minute)
	testCases := []struct {
		alert string
		want  []string // the firing series, as label sets
	}{
		{"ShipholdBackendDown", []string{`{backend="isilon", kind="isilon"}`}},
		{"ShipholdTenantNearQuota", []string{`{tenant="blog"}`, `{tenant="shop"}`}},
		{"ShipholdOperationErrors", []string{`{operation="CreateVolume"}`}},
		{"ShipholdStaleExportClients", []string{`{backend="isilon"}`}},
		{"ShipholdSurveyStale", []string{`{part="tenants"}`}},
	}
	if len(rules) != len(testCases) {
		t.Errorf("PrometheusRule has alerts %v", keys(rules))
	}
	for _, tc := range testCases {
		t.Run(tc.alert, func(t *testing.T) {
			r, ok := rules[tc.alert]
			if !ok {
				t.Fatalf("no alert %s among %v", tc.alert, keys(rules))
			}
			q, err := engine.NewInstantQuery(context.Background(), storage, nil, exprOf(r), at)
			if err != nil {
				t.Fatal(err)
			}
			res := q.Exec(context.Background())
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			vec, err := res.Vector()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range vec {
				got = append(got, s.Metric.String())
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%s fires for %v, want %v\n%s", tc.alert, got, tc.want, exprOf(r))
			}
		})
	}
}

// TestPrometheusRuleValuesApply: the thresholds come from values.yaml.
func TestPrometheusRuleValuesApply(t *testing.T) {
	rules := alertRules(t, map[string]any{"metrics": map[string]any{"prometheusRule": map[string]any{
		"enabled": true, "tenantQuotaRatio": 0.75, "errorRatio": 0.2, "backendDownFor": "2m"}}})
	if e := exprOf(rules["ShipholdTenantNearQuota"]); strings.Count(e, "> 0.75") != 2 {
		t.Errorf("tenant threshold not applied: %s", e)
	}
	if e := exprOf(rules["ShipholdOperationErrors"]); !strings.Contains(e, "> 0.2") {
		t.Errorf("error ratio not applied: %s", e)
	}
	if d := rules["ShipholdBackendDown"].For; d == nil || *d != "2m" {
		t.Errorf("backendDownFor not applied: %v", d)
	}
}

// TestChartLogFormat: the driver containers log JSON when asked.
func TestChartLogFormat(t *testing.T) {
	objs := byKey(t, chartObjects(t, map[string]any{"logFormat": "json"}))
	ds := objs["DaemonSet/shiphold-node"].Obj.(*appsv1.DaemonSet)
	dep := objs["Deployment/shiphold-controller"].Obj.(*appsv1.Deployment)
	for _, ps := range []corev1.PodSpec{ds.Spec.Template.Spec, dep.Spec.Template.Spec} {
		if args := container(t, ps, "shiphold-csi").Args; !slices.Contains(args, "--logging-format=json") {
			t.Errorf("driver args %v lack --logging-format=json", args)
		}
	}
}

func keys(m map[string]monitoringv1.Rule) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func exprOf(r monitoringv1.Rule) string { return r.Expr.String() }
