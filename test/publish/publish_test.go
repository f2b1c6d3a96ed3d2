// Package publish tests controller publish/unpublish on every real backend through the
// plugin's socket: the mode a node was given is kept on the storage, a republish in the
// other mode is ALREADY_EXISTS (CSI with PUBLISH_READONLY), and unpublish is idempotent.
package publish

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

const (
	node1 = "node-1@127.0.0.1"
	node2 = "node-2@127.0.0.2"
)

// cephCLI runs a ceph/rbd command against the local cluster and returns its output.
func cephCLI(t *testing.T, name string, args ...string) string {
	t.Helper()
	args = append([]string{"-c", filepath.Join(harness.CephDir(), "ceph.conf")}, args...)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPublishRecordsOnEveryBackend(t *testing.T) {
	sim := harness.StartOneFS(t)
	backends := []config.Backend{harness.RBDBackend(t, "rbd"), harness.CephFSBackend(t, "cephfs"), sim.Backend(t, "isilon")}
	d := harness.StartDriver(t, &config.Config{Backends: backends}, driver.ModeController)
	ctrl := d.Controller()

	// What each backend keeps about node grants, as its own tools show it.
	recorded := map[string]func(t *testing.T, vctx map[string]string) string{
		"rbd": func(t *testing.T, vctx map[string]string) string {
			return cephCLI(t, "rbd", "image-meta", "list", vctx["pool"]+"/"+vctx["radosNamespace"]+"/"+vctx["imageName"])
		},
		"cephfs": func(t *testing.T, vctx map[string]string) string {
			return cephCLI(t, "ceph", "fs", "subvolume", "metadata", "ls", vctx["fsName"], vctx["subvolumeName"], "--group_name", vctx["subvolumeGroup"])
		},
		"isilon": func(t *testing.T, vctx map[string]string) string {
			var b strings.Builder
			for _, e := range sim.Server.Exports() {
				for _, p := range e.Paths {
					if p == vctx["exportPath"] {
						b.WriteString("clients=" + strings.Join(e.Clients, ",") + " read_only_clients=" + strings.Join(e.ReadOnlyClients, ","))
					}
				}
			}
			return b.String()
		},
	}
	// What the record must say after node-1 (rw) and node-2 (ro) were published.
	wantBoth := map[string][]string{
		"rbd":    {"shiphold.node.node-1", "rw", "shiphold.node.node-2", "ro"},
		"cephfs": {`"shiphold.node.node-1": "rw"`, `"shiphold.node.node-2": "ro"`},
		"isilon": {"clients=127.0.0.1", "127.0.0.2"},
	}

	for _, be := range backends {
		t.Run(be.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			multi := csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
			vcap := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: multi}}
			if be.Kind == "rbd" {
				vcap.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
			} else {
				vcap.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}
			}
			v, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-publish-" + be.Name, CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20},
				VolumeCapabilities: []*csi.VolumeCapability{vcap}, Parameters: map[string]string{"backend": be.Name, "csi.storage.k8s.io/pvc/namespace": "pubtest"}})
			if err != nil {
				t.Fatal(err)
			}
			defer ctrl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.Volume.VolumeId})
			id, vctx := v.Volume.VolumeId, v.Volume.VolumeContext
			publish := func(node string, ro bool) error {
				_, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, Readonly: ro, VolumeCapability: vcap, VolumeContext: vctx})
				return err
			}
			unpublish := func(node string) error {
				_, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node})
				return err
			}
			for i := 0; i < 2; i++ {
				if err := publish(node1, false); err != nil {
					t.Fatalf("publish read-write (try %d): %v", i+1, err)
				}
			}
			if err := publish(node1, true); status.Code(err) != codes.AlreadyExists {
				t.Fatalf("republish read-only to a read-write node: %v, want ALREADY_EXISTS", err)
			}
			if err := publish(node2, true); err != nil {
				t.Fatalf("publish read-only to a second node: %v", err)
			}
			got := recorded[be.Name](t, vctx)
			for _, w := range wantBoth[be.Name] {
				if !strings.Contains(got, w) {
					t.Fatalf("backend record lacks %q after publishing:\n%s", w, got)
				}
			}
			for i := 0; i < 2; i++ {
				if err := unpublish(node1); err != nil {
					t.Fatalf("unpublish (try %d): %v", i+1, err)
				}
			}
			if got := recorded[be.Name](t, vctx); strings.Contains(got, "node-1") || strings.Contains(got, "clients=127.0.0.1") {
				t.Fatalf("node-1 still recorded after unpublish:\n%s", got)
			}
			if err := publish(node1, true); err != nil {
				t.Fatalf("publish read-only after unpublish: %v", err)
			}
			if err := unpublish(""); err != nil {
				t.Fatalf("unpublish from every node: %v", err)
			}
			if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: strings.Replace(id, ":pubtest:", ":nobody:", 1),
				NodeId: node1, VolumeCapability: vcap}); status.Code(err) != codes.NotFound {
				t.Fatalf("publish of a volume that does not exist: %v, want NOT_FOUND", err)
			}
		})
	}
}

// TestCopiesStartUnpublished: a volume restored from a snapshot, or cloned, of a volume
// published to node-1 is attached nowhere. Its storage holds no grant for node-1, and
// publishing it read-only to node-1 succeeds (a grant copied from the source would make that
// ALREADY_EXISTS and show an admin an attachment that does not exist).
func TestCopiesStartUnpublished(t *testing.T) {
	sim := harness.StartOneFS(t)
	backends := []config.Backend{harness.RBDBackend(t, "rbd"), harness.CephFSBackend(t, "cephfs"), sim.Backend(t, "isilon")}
	d := harness.StartDriver(t, &config.Config{Backends: backends}, driver.ModeController)
	ctrl := d.Controller()
	// node-1's grant, as each backend's own tools show it
	granted := map[string]func(t *testing.T, vctx map[string]string) bool{
		"rbd": func(t *testing.T, vctx map[string]string) bool {
			return strings.Contains(cephCLI(t, "rbd", "image-meta", "list", vctx["pool"]+"/"+vctx["radosNamespace"]+"/"+vctx["imageName"]), "shiphold.node.node-1")
		},
		"cephfs": func(t *testing.T, vctx map[string]string) bool {
			return strings.Contains(cephCLI(t, "ceph", "fs", "subvolume", "metadata", "ls", vctx["fsName"], vctx["subvolumeName"], "--group_name", vctx["subvolumeGroup"]), "shiphold.node.node-1")
		},
		"isilon": func(t *testing.T, vctx map[string]string) bool {
			for _, e := range sim.Server.Exports() {
				if slices.Contains(e.Paths, vctx["exportPath"]) && (slices.Contains(e.Clients, "127.0.0.1") || slices.Contains(e.ReadOnlyClients, "127.0.0.1")) {
					return true
				}
			}
			return false
		},
	}
	for _, be := range backends {
		t.Run(be.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			vcap := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
				AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}
			params := map[string]string{"backend": be.Name, "csi.storage.k8s.io/pvc/namespace": "pubcopy"}
			create := func(name string, src *csi.VolumeContentSource) *csi.Volume {
				t.Helper()
				req := &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20},
					VolumeCapabilities: []*csi.VolumeCapability{vcap}, Parameters: params, VolumeContentSource: src}
				for {
					v, err := ctrl.CreateVolume(ctx, req)
					if err == nil {
						t.Cleanup(func() { ctrl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.Volume.VolumeId}) })
						return v.Volume
					}
					if status.Code(err) != codes.Aborted || ctx.Err() != nil { // Aborted: a copy in progress
						t.Fatalf("CreateVolume %s: %v", name, err)
					}
					time.Sleep(time.Second)
				}
			}
			publish := func(v *csi.Volume, ro bool) error {
				_, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.VolumeId, NodeId: node1, Readonly: ro, VolumeCapability: vcap, VolumeContext: v.VolumeContext})
				return err
			}
			src := create("pvc-copysrc-"+be.Name, nil)
			if err := publish(src, false); err != nil {
				t.Fatal(err)
			}
			if !granted[be.Name](t, src.VolumeContext) {
				t.Fatal("the storage shows no grant for node-1 after publishing the source")
			}
			snap, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: src.VolumeId, Name: "snap-copysrc-" + be.Name})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctrl.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap.Snapshot.SnapshotId})
			})
			copies := map[string]*csi.Volume{
				"restored": create("pvc-restored-"+be.Name, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
					Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}}),
				"cloned": create("pvc-cloned-"+be.Name, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
					Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.VolumeId}}}),
			}
			for how, v := range copies {
				if granted[be.Name](t, v.VolumeContext) {
					t.Errorf("%s volume: the storage shows a grant for node-1 before any publish", how)
				}
				if err := publish(v, true); err != nil {
					t.Errorf("%s volume: publish read-only to node-1: %v", how, err)
				}
			}
		})
	}
}
