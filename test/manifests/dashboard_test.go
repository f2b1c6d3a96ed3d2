package manifests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
)

// The names pkg/metrics exports (histogram series carry their _bucket/_sum/_count suffixes).
var shipholdMetrics = map[string]bool{
	"shiphold_csi_operation_duration_seconds":       true,
	"shiphold_csi_operations_total":                 true,
	"shiphold_csi_operations_in_flight":             true,
	"shiphold_backend_up":                           true,
	"shiphold_backend_last_probe_timestamp_seconds": true,
	// the controller's background survey
	"shiphold_backend_available_bytes":               true,
	"shiphold_tenant_bytes":                          true,
	"shiphold_tenant_volumes":                        true,
	"shiphold_tenant_quota_bytes":                    true,
	"shiphold_tenant_quota_volumes":                  true,
	"shiphold_exports":                               true,
	"shiphold_export_clients":                        true,
	"shiphold_export_stale_clients":                  true,
	"shiphold_survey_last_success_timestamp_seconds": true,
	"shiphold_survey_errors_total":                   true,
	"shiphold_survey_duration_seconds":               true,
}

func TestGrafanaDashboardUsesDriverMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "shiphold-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("dashboard has no uid or no panels")
	}
	name := regexp.MustCompile(`shiphold_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
				if !shipholdMetrics[base] {
					t.Errorf("panel %q uses %s, which pkg/metrics does not export", p.Title, m)
				}
				used[base] = true
			}
		}
	}
	var unused []string
	for m := range shipholdMetrics {
		if !used[m] {
			unused = append(unused, m)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("dashboard never shows %v", unused)
	}
}
