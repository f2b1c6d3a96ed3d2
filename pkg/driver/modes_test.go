package driver

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
)

// modeOptions are a plugin's options with one rbd backend, its sides set as mode needs.
func modeOptions(mode Mode) Options {
	o := Options{Kinds: registry.Kinds(), Name: "shiphold.csi.io", Version: "test", NodeName: "node1", NodeAddress: "10.0.0.5",
		Config: &config.Config{Backends: []config.Backend{{Name: "ceph-rbd", Kind: "rbd"}}}, Mounter: mount.NewFakeMounter(nil)}
	if mode != ModeNode {
		o.Controllers = map[string]backend.Controller{"ceph-rbd": newFake("ceph-rbd", "rbd")}
	}
	if mode != ModeController {
		o.Stagers = map[string]backend.Stager{"ceph-rbd": &fakeStager{staged: map[string]string{}}}
	}
	return o
}

// TestModesServeTheirServices pins what each --mode serves: identity always, the controller
// service (and its plugin capability) unless node, the node service unless controller.
func TestModesServeTheirServices(t *testing.T) {
	for _, tc := range []struct {
		mode     Mode
		services string
		ctrlCap  bool
	}{
		{ModeController, "csi.v1.Controller csi.v1.Identity", true},
		{ModeNode, "csi.v1.Identity csi.v1.Node", false},
		{ModeAll, "csi.v1.Controller csi.v1.Identity csi.v1.Node", true},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			d, err := Compose(tc.mode, modeOptions(tc.mode))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range d.GRPCServer().GetServiceInfo() {
				names = append(names, n)
			}
			sort.Strings(names)
			if got := strings.Join(names, " "); got != tc.services {
				t.Fatalf("services %q, want %q", got, tc.services)
			}
			caps, err := d.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			ctrl := false
			for _, c := range caps.GetCapabilities() {
				ctrl = ctrl || c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE
			}
			if ctrl != tc.ctrlCap {
				t.Fatalf("CONTROLLER_SERVICE capability %v, want %v", ctrl, tc.ctrlCap)
			}
		})
	}
}

// TestModesNeedTheirSides pins the start-up checks: each side a mode serves needs every
// backend's part for it, and a node needs its name.
func TestModesNeedTheirSides(t *testing.T) {
	noName := modeOptions(ModeNode)
	noName.NodeName = ""
	noCtrl := modeOptions(ModeAll)
	noCtrl.Controllers = nil
	noStager := modeOptions(ModeAll)
	noStager.Stagers = nil
	for _, tc := range []struct {
		name string
		mode Mode
		opts Options
		want string
	}{
		{"node without name", ModeNode, noName, "node mode needs a node name (--nodeid)"},
		{"no controller", ModeAll, noCtrl, `backend "ceph-rbd" has no controller`},
		{"no stager", ModeAll, noStager, `backend "ceph-rbd" has no node stager`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compose(tc.mode, tc.opts); err == nil || err.Error() != tc.want {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
	ctrlOnly := modeOptions(ModeController)
	ctrlOnly.NodeName = ""
	if _, err := Compose(ModeController, ctrlOnly); err != nil {
		t.Fatalf("a controller needs no node name: %v", err)
	}
}

// TestOnlyControllersProbeBackends pins that the backend probes run where the controller
// side is served, never on a node plugin (which holds no controller).
func TestOnlyControllersProbeBackends(t *testing.T) {
	for _, tc := range []struct {
		mode   Mode
		probes bool
	}{{ModeController, true}, {ModeAll, true}, {ModeNode, false}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			opts := modeOptions(tc.mode)
			var probes atomic.Int32
			opts.ProbeInterval = 10 * time.Millisecond
			opts.OnProbe = func(string, string, error) { probes.Add(1) }
			d, err := Compose(tc.mode, opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- d.Serve(ctx, "unix://"+filepath.Join(t.TempDir(), "csi.sock")) }()
			time.Sleep(100 * time.Millisecond)
			cancel()
			if err := <-served; err != nil {
				t.Fatal(err)
			}
			if got := probes.Load() > 0; got != tc.probes {
				t.Fatalf("%d probes, want some: %v", probes.Load(), tc.probes)
			}
		})
	}
}
