package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/migrate"
)

func TestKubectlPluginName(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runAs("kubectl-shiphold", []string{"migrate", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "kubectl shiphold migrate (VOLUME_ID") {
		t.Fatalf("help does not name the plugin:\n%s", out.String())
	}
	out.Reset()
	if code := runAs("shipholdctl", []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "shipholdctl [command]") {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
}

func TestMigrateUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "--to", "b"}, "name the source once"},
		{[]string{"migrate", "v1:b:t::0123456789abcdef", "--from", "/x", "--to", "b"}, "name the source once"},
		{[]string{"migrate", "--from", "/x", "--to", "b"}, "--from needs --tenant and --size"},
		{[]string{"migrate", "not-an-id", "--to", "b"}, "source \"not-an-id\""},
		{[]string{"migrate", "--pvc", "shop/data", "--to", "b"}, "need --kubeconfig"},
		{[]string{"migrate", "--pvc", "shop", "--to", "b", "--kubeconfig", "k"}, "want NAMESPACE/NAME"},
		{[]string{"migrate", "--pvc", "shop/data", "--to", "b", "--kubeconfig", "k", "--cutover"}, "--cutover goes with --final"},
		{[]string{"migrate", "rollback", "--pvc", "shop/data"}, "needs --kubeconfig"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}

// withMigrationBackends serves the migrate command fake controllers.
func withMigrationBackends(t *testing.T, ctrls map[string]backend.Controller) string {
	t.Helper()
	prev := openMigrationBackends
	openMigrationBackends = func(*config.Config) (map[string]backend.Controller, map[string]backend.Stager, func(), error) {
		return ctrls, nil, func() {}, nil
	}
	t.Cleanup(func() { openMigrationBackends = prev })
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte(`
backends:
  - {name: ceph-fs, kind: cephfs, cephfs: {clusterID: c, monitors: [m], fsName: cephfs}}
`), 0o600)
	return cfg
}

// A dry run plans against the target kind's limits before anything exists, and reports by
// path what CephFS cannot hold: times before 1970.
func TestMigrateDryRunReportsUnrepresentable(t *testing.T) {
	cfg := withMigrationBackends(t, map[string]backend.Controller{"ceph-fs": storage{kind: "cephfs"}})
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "old.html"), []byte("1969"), 0o644)
	os.WriteFile(filepath.Join(src, "new.html"), []byte("2024"), 0o644)
	ts := []unix.Timespec{{Sec: -100}, {Sec: -100}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, "old.html"), ts, 0); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"migrate", "--config", cfg, "--from", src, "--tenant", "shop", "--size", "1Gi", "--to", "ceph-fs",
		"--dry-run", "--state-dir", t.TempDir(), "--progress", "none"}, &out, &errb)
	if code != exitUnrepresentable {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitUnrepresentable, out.String(), errb.String())
	}
	var line struct {
		Result migrate.Result `json:"result"`
	}
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("result line %q: %v", out.String(), err)
	}
	if len(line.Result.Problems) != 2 || line.Result.Problems[0].Path != "old.html" || line.Result.Problems[0].Kind != migrate.ProblemTime {
		t.Fatalf("problems %+v: want old.html's mtime and atime", line.Result.Problems)
	}
	code = run([]string{"migrate", "--config", cfg, "--from", src, "--tenant", "shop", "--size", "1Gi", "--to", "ceph-fs",
		"--dry-run", "--unrepresentable", "clamp", "--state-dir", t.TempDir(), "--progress", "none"}, &out, &errb)
	if code != 0 {
		t.Fatalf("clamped dry run: exit %d\n%s", code, errb.String())
	}
}
