package manifests

import (
	"slices"
	"testing"

	storagev1 "k8s.io/api/storage/v1"
)

// A class's allowedTopologies in the values reach the StorageClass, so an Isilon class can
// keep to the nodes that reach the backend (topology.shiphold.io/<backend>=reachable).
func TestChartClassAllowedTopologies(t *testing.T) {
	objs := byKey(t, chartObjects(t, map[string]any{"storageClasses": []any{map[string]any{
		"name": "isilon-bare-metal", "backend": "isilon", "secret": "isilon",
		"parameters": map[string]any{"nfsServer": "sc-bare-metal.isilon.example"},
		"allowedTopologies": []any{map[string]any{"matchLabelExpressions": []any{
			map[string]any{"key": "topology.shiphold.io/isilon", "values": []any{"reachable"}}}}},
	}}}))
	sc := objs["StorageClass/isilon-bare-metal"].Obj.(*storagev1.StorageClass)
	at := sc.AllowedTopologies
	if len(at) != 1 || len(at[0].MatchLabelExpressions) != 1 || at[0].MatchLabelExpressions[0].Key != "topology.shiphold.io/isilon" ||
		!slices.Equal(at[0].MatchLabelExpressions[0].Values, []string{"reachable"}) {
		t.Fatalf("allowedTopologies = %+v", at)
	}
	if sc.Parameters["nfsServer"] != "sc-bare-metal.isilon.example" {
		t.Fatalf("parameters = %v", sc.Parameters)
	}
	// The default classes have none: every node reaches a backend without a topology.
	for _, o := range chartObjects(t, nil) {
		if c, ok := o.Obj.(*storagev1.StorageClass); ok && c.AllowedTopologies != nil {
			t.Errorf("default class %s has allowedTopologies %+v", c.Name, c.AllowedTopologies)
		}
	}
}
