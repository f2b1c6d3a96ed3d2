package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPluginLinksNoTypedKubernetesClient keeps the typed clientset and the API types of every
// Kubernetes group out of the plugin: they were 44 MB of its 76 MB binary, most of it
// resident in every controller and node pod, for one GET of the Node object.
func TestPluginLinksNoTypedKubernetesClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "k8s.io/client-go/kubernetes" || strings.HasPrefix(pkg, "k8s.io/api/") {
			t.Errorf("the plugin links %s; read the Node through the REST transport (nodeapi.go)", pkg)
		}
	}
}
