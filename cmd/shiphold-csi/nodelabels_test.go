package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shiphold/shiphold/pkg/config"
)

func TestNodeLabelsFromFlag(t *testing.T) {
	cfg := &config.Config{Backends: []config.Backend{{Name: "isilon", Topology: &config.Topology{NodeSelector: map[string]string{"a": "b"}}}}}
	got, err := nodeLabels(context.Background(), cfg, "example.com/platform=bare-metal,zone=a", "n1")
	if err != nil || got["example.com/platform"] != "bare-metal" || got["zone"] != "a" || len(got) != 2 {
		t.Fatalf("labels %v, %v", got, err)
	}
	if _, err := nodeLabels(context.Background(), cfg, "novalue", "n1"); err == nil || !strings.Contains(err.Error(), "--node-labels") {
		t.Fatalf("a malformed flag gave %v", err)
	}
	// Without topology nothing is read, so no API access is needed.
	if got, err := nodeLabels(context.Background(), &config.Config{Backends: []config.Backend{{Name: "rbd"}}}, "", "n1"); got != nil || err != nil {
		t.Fatalf("no topology: %v, %v", got, err)
	}
}

func TestLabelsOfNode(t *testing.T) {
	cs := fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-7", Labels: map[string]string{"example.com/platform": "bare-metal"}}})
	got, err := labelsOfNode(context.Background(), cs, "worker-7")
	if err != nil || got["example.com/platform"] != "bare-metal" {
		t.Fatalf("labels %v, %v", got, err)
	}
	if _, err := labelsOfNode(context.Background(), cs, "worker-8"); err == nil || !strings.Contains(err.Error(), `node "worker-8"`) {
		t.Fatalf("a missing node gave %v", err)
	}
}
