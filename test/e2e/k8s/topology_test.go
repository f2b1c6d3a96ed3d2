package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/shiphold/shiphold/pkg/config"
)

// e2eBareMetal is the node label the e2e's Isilon backend is limited to (its topology);
// the driver's node is given it with --node-labels, as bare-metal workers would carry it.
var e2eBareMetal = map[string]string{"example.com/platform": "bare-metal"}

const e2eNodeLabels = "example.com/platform=bare-metal"

// nodeTopology is what the kubelet registers for the driver from NodeGetInfo: the segments
// become Node labels ("k: v" items for a YAML map) and their keys the CSINode's topologyKeys.
func nodeTopology(ctx context.Context, conn *grpc.ClientConn) (labels, keys string, err error) {
	info, err := csi.NewNodeClient(conn).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		return "", "", err
	}
	var l, k []string
	for key, value := range info.GetAccessibleTopology().GetSegments() {
		l = append(l, fmt.Sprintf(", %s: %s", key, value))
		k = append(k, key)
	}
	return strings.Join(l, ""), strings.Join(k, ", "), nil
}

// stepTopology: a copy of the backend's class limited by allowedTopologies to the nodes
// that reach the backend binds a PVC whose PV has that node affinity; a copy limited to
// nodes that do not leaves its PVC Pending with the driver's RESOURCE_EXHAUSTED.
func stepTopology(ctx context.Context, k *kube, b *e2eBackend) error {
	key := config.TopologyKeyPrefix + b.name
	ns := e2eTenants[0]
	good, bad := b.sc+"-reachable", b.sc+"-unreachable"
	goodPVC, badPVC := "topo-"+b.label, "topo-none-"+b.label
	defer func() {
		_, _ = k.run(ctx, "delete", "pvc", "-n", ns, goodPVC, badPVC, "--ignore-not-found", "--wait=false")
		_, _ = k.run(ctx, "delete", "storageclass", good, bad, "--ignore-not-found")
	}()
	for class, value := range map[string]string{good: config.TopologyReachable, bad: config.TopologyUnreachable} {
		if err := applyTopologyClass(ctx, k, b.sc, class, key, value); err != nil {
			return err
		}
	}
	for pvc, class := range map[string]string{goodPVC: good, badPVC: bad} {
		if _, err := k.apply(ctx, pvcYAML(ns, pvc, class, b.access, e2eSize, "")); err != nil {
			return err
		}
	}
	pv, err := waitPVCBound(ctx, k, ns, goodPVC, 4*time.Minute)
	if err != nil {
		return err
	}
	if err := checkNodeAffinity(ctx, k, pv, key, config.TopologyReachable); err != nil {
		return err
	}
	want := "unable to provision in the accessible topology"
	err = poll(ctx, 2*time.Minute, func() (bool, string, error) {
		ev := lastEvent(ctx, k, ns, badPVC)
		return strings.Contains(ev, "ResourceExhausted") && strings.Contains(ev, want), "no ResourceExhausted event yet" + ev, nil
	})
	if err != nil {
		return fmt.Errorf("PVC %s/%s on %s: %w", ns, badPVC, bad, err)
	}
	if out, err := k.run(ctx, "get", "pvc", "-n", ns, badPVC, "-o", "jsonpath={.status.phase}"); err != nil || string(out) != "Pending" {
		return fmt.Errorf("PVC %s/%s on %s is %q (%v), want Pending", ns, badPVC, bad, out, err)
	}
	if _, err := k.run(ctx, "delete", "pvc", "-n", ns, goodPVC, badPVC, "--wait=false"); err != nil {
		return err
	}
	return errors.Join(waitGone(ctx, k, 4*time.Minute, ns, "pvc", goodPVC), waitGone(ctx, k, 4*time.Minute, "", "pv", pv),
		waitGone(ctx, k, time.Minute, ns, "pvc", badPVC))
}

// applyTopologyClass copies StorageClass from as name, allowed only where key=value.
func applyTopologyClass(ctx context.Context, k *kube, from, name, key, value string) error {
	var sc map[string]any
	if err := k.getJSON(ctx, &sc, "get", "storageclass", from); err != nil {
		return err
	}
	sc["metadata"] = map[string]any{"name": name}
	sc["allowedTopologies"] = []any{map[string]any{"matchLabelExpressions": []any{map[string]any{"key": key, "values": []string{value}}}}}
	doc, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	_, err = k.apply(ctx, string(doc))
	return err
}

func checkNodeAffinity(ctx context.Context, k *kube, pv, key, value string) error {
	var obj struct {
		Spec struct {
			NodeAffinity struct {
				Required struct {
					Terms []struct {
						Exprs []struct {
							Key      string   `json:"key"`
							Operator string   `json:"operator"`
							Values   []string `json:"values"`
						} `json:"matchExpressions"`
					} `json:"nodeSelectorTerms"`
				} `json:"required"`
			} `json:"nodeAffinity"`
		} `json:"spec"`
	}
	if err := k.getJSON(ctx, &obj, "get", "pv", pv); err != nil {
		return err
	}
	terms := obj.Spec.NodeAffinity.Required.Terms
	if len(terms) != 1 || len(terms[0].Exprs) != 1 {
		return fmt.Errorf("PV %s: node affinity %+v, want one term %s In [%s]", pv, terms, key, value)
	}
	e := terms[0].Exprs[0]
	if e.Key != key || e.Operator != "In" || len(e.Values) != 1 || e.Values[0] != value {
		return fmt.Errorf("PV %s: node affinity %+v, want %s In [%s]", pv, e, key, value)
	}
	k.t.Logf("PV %s: node affinity %s %s %v", pv, e.Key, e.Operator, e.Values)
	return nil
}
