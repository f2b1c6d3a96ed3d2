package k8s

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSidecarsRunWithDeployArgs: the harness starts each sidecar with the args of its
// container in deploy/kubernetes/controller.yaml (what the e2e measures is what users
// deploy), but for the socket, the lease and the verbosity, which it sets itself; a
// manifest without a sidecar fails.
func TestSidecarsRunWithDeployArgs(t *testing.T) {
	root, err := findRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DeploySidecarArgs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range AllSidecars {
		for _, a := range got[s] {
			for _, f := range harnessSidecarFlags {
				if strings.HasPrefix(a, f+"=") {
					t.Errorf("%s: %s is the harness's to set", s, a)
				}
			}
		}
		if !slices.Contains(got[s], "--timeout=150s") {
			t.Errorf("%s args %v lack the deployed --timeout=150s", s, got[s])
		}
	}
	if !slices.Contains(got[ToolProvisioner], "--extra-create-metadata") {
		t.Errorf("csi-provisioner args %v lack --extra-create-metadata", got[ToolProvisioner])
	}

	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(data), "name: csi-attacher", "name: csi-attacher-old", 1)
	if err := os.MkdirAll(filepath.Join(dir, "deploy", "kubernetes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deploy", "kubernetes", "controller.yaml"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DeploySidecarArgs(dir); err == nil || !strings.Contains(err.Error(), "csi-attacher") {
		t.Errorf("a manifest without csi-attacher: err %v, want one naming it", err)
	}
}
