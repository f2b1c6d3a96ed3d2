// Package opstest runs shiphold's operations surface against real storage: the Nagios
// plugin (shipholdctl check) against a private Ceph whose monitor is frozen and the OneFS
// simulator, the background usage survey behind the Prometheus metrics, and the JSON
// request logs of the plugin.
package opstest

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

const onefsPassword = "onefs-test-password"

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) { harness.Main(m) }

// binary builds one of shiphold's commands once per test binary: the plugin and the CLI
// are run as Kubernetes and the monitoring system run them, as processes.
func binary(t *testing.T, name string) string {
	t.Helper()
	return harness.Binary(t, name)
}

// writeConfig writes cfg as the driver's YAML config file.
func writeConfig(t *testing.T, cfg *config.Config) string {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCheck runs `shipholdctl check ARGS --config CFG` and returns its exit code and stdout.
func runCheck(t *testing.T, cfgPath string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t, "shipholdctl"), append(append([]string{"check"}, args...), "--config", cfgPath)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("shipholdctl check %v: %v", args, err)
	}
	t.Logf("check %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(out.String()))
	return code, out.String()
}

// onefsPUT changes a Platform API resource by hand, as an admin at the array would.
func onefsPUT(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	req.SetBasicAuth("admin", onefsPassword)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}
