package main

import (
	"sort"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
)

// TestComposeServesWhatModeSays: --mode controller serves identity and controller, node
// identity and node, all the three; each server is built only where it is served.
func TestComposeServesWhatModeSays(t *testing.T) {
	opts := driver.Options{Name: "shiphold.csi.io", Version: "test", NodeName: "node1", NodeAddress: "10.0.0.5", Kinds: registry.Kinds(),
		Config:      &config.Config{Backends: []config.Backend{{Name: "ceph-rbd", Kind: "rbd"}}},
		Controllers: map[string]backend.Controller{"ceph-rbd": struct{ backend.Controller }{}},
		Stagers:     map[string]backend.Stager{"ceph-rbd": struct{ backend.Stager }{}}}
	for mode, want := range map[driver.Mode]string{
		driver.ModeController: "csi.v1.Controller csi.v1.Identity",
		driver.ModeNode:       "csi.v1.Identity csi.v1.Node",
		driver.ModeAll:        "csi.v1.Controller csi.v1.Identity csi.v1.Node",
	} {
		d, err := driver.Compose(mode, opts)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		var names []string
		for n := range d.GRPCServer().GetServiceInfo() {
			names = append(names, n)
		}
		sort.Strings(names)
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s serves %q, want %q", mode, got, want)
		}
		if (d.ControllerServer != nil) != (mode != driver.ModeNode) || (d.NodeServer != nil) != (mode != driver.ModeController) {
			t.Errorf("%s built controller %v, node %v", mode, d.ControllerServer != nil, d.NodeServer != nil)
		}
	}
	noName := opts
	noName.NodeName = ""
	if _, err := driver.Compose(driver.ModeController, noName); err != nil {
		t.Errorf("a controller needs no node name: %v", err)
	}
	if _, err := driver.Compose(driver.ModeNode, noName); err == nil {
		t.Error("a node without a name was composed")
	}
}
