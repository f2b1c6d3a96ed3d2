package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/shiphold/shiphold/pkg/config"
)

// nodeLabelsTimeout bounds the one API call at start; a node plugin that cannot say its
// topology must not register with a wrong one, so it fails and kubelet restarts it.
const nodeLabelsTimeout = 30 * time.Second

// nodeLabels are the labels the backends' topology is matched against: --node-labels when
// given (tests, a node outside Kubernetes), else the Node object's own, read once at start
// (kubelet asks NodeGetInfo only when the plugin registers). Without topology none are needed.
func nodeLabels(ctx context.Context, cfg *config.Config, flagValue, nodeName string) (map[string]string, error) {
	if flagValue != "" {
		m, err := labels.ConvertSelectorToLabelsMap(flagValue)
		if err != nil {
			return nil, fmt.Errorf("--node-labels %q: %v (want key=value,key=value)", flagValue, err)
		}
		return m, nil
	}
	if !cfg.HasTopology() {
		return nil, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("a backend has a topology, so the node plugin needs its node's labels: pass --node-labels, or run it in a pod whose service account may get nodes (%v)", err)
	}
	return labelsOfNode(ctx, rc, nodeName)
}

func labelsOfNode(ctx context.Context, rc *rest.Config, nodeName string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, nodeLabelsTimeout)
	defer cancel()
	labels, err := getNodeLabels(ctx, rc, nodeName)
	if err != nil {
		return nil, fmt.Errorf("read the labels of node %q for the backends' topology (is --nodeid the Kubernetes node name, and may the service account get nodes?): %w", nodeName, err)
	}
	return labels, nil
}
