package manifests

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/yaml"
)

// zonesExample is the chart's example of Isilon access zones (issue 12); pkg/config's
// tests parse its config with the driver's own strict decoder.
var zonesExample = filepath.Join(chartDir, "examples", "isilon-zones.yaml")

// The example renders: its config file carries isilon.zones, and every zone has a class
// naming it in accessZone.
func TestChartIsilonZonesExample(t *testing.T) {
	raw, err := os.ReadFile(zonesExample)
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		t.Fatal(err)
	}
	objs := byKey(t, chartObjects(t, vals))
	cm := objs["ConfigMap/shiphold-config"].Obj.(*corev1.ConfigMap)
	var cfg struct {
		Backends []struct {
			Isilon *struct {
				Zones []struct{ Name, Key, IsiPath string } `json:"zones"`
			} `json:"isilon"`
		} `json:"backends"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	var zones []string
	for _, b := range cfg.Backends {
		if b.Isilon == nil {
			continue
		}
		for _, z := range b.Isilon.Zones {
			if z.Name == "" || z.Key == "" || z.IsiPath == "" {
				t.Errorf("zone %+v: name, key and isiPath are required", z)
			}
			zones = append(zones, z.Name)
		}
	}
	if len(zones) == 0 {
		t.Fatalf("the rendered config has no isilon.zones:\n%s", cm.Data["config.yaml"])
	}
	for _, z := range zones {
		found := false
		for k, o := range objs {
			if sc, ok := o.Obj.(*storagev1.StorageClass); ok && sc.Parameters["accessZone"] == z {
				found = true
				t.Logf("%s: accessZone %s, nfsServer %q", k, z, sc.Parameters["nfsServer"])
			}
		}
		if !found {
			t.Errorf("no StorageClass of the example names accessZone %q", z)
		}
	}
}
