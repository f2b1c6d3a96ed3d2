package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

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
	// An API server that knows worker-7 and answers as Kubernetes does, token checked.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer sa-token":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"kind":"Status","message":"Unauthorized"}`))
		case r.URL.Path == "/api/v1/nodes/worker-7":
			_, _ = w.Write([]byte(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"worker-7","labels":{"example.com/platform":"bare-metal"}}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","message":"nodes \"` + strings.TrimPrefix(r.URL.Path, "/api/v1/nodes/") + `\" not found"}`))
		}
	}))
	defer api.Close()
	rc := &rest.Config{Host: api.URL, BearerToken: "sa-token"}
	got, err := labelsOfNode(context.Background(), rc, "worker-7")
	if err != nil || got["example.com/platform"] != "bare-metal" || len(got) != 1 {
		t.Fatalf("labels %v, %v", got, err)
	}
	_, err = labelsOfNode(context.Background(), rc, "worker-8")
	if err == nil || !strings.Contains(err.Error(), `node "worker-8"`) || !strings.Contains(err.Error(), `nodes "worker-8" not found`) {
		t.Fatalf("a missing node gave %v", err)
	}
	if _, err := labelsOfNode(context.Background(), &rest.Config{Host: api.URL, BearerToken: "wrong"}, "worker-7"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a refused token gave %v", err)
	}
}
