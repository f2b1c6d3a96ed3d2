// Package sanity runs the kubernetes-csi sanity suite against shiphold on a real backend.
// Ginkgo runs one suite per process, so each backend/access pair is its own go test run:
//
//	SANITY_BACKEND=rbd/mount go test -tags pacific ./test/sanity/
//
// access is mount or block, for csi-sanity's SINGLE_NODE_WRITER volumes, or mount-mnmw /
// block-mnmw to send every one of them as MULTI_NODE_MULTI_WRITER instead (see asMode);
// a -topo suffix limits the backend to labelled nodes (topology_test.go).
// The run ends with the line "sanity <backend>/<access>: N passed, N failed, N skipped".
package sanity

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"google.golang.org/grpc"

	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

var target = os.Getenv("SANITY_BACKEND")

// TestSanity runs csi-sanity, controller and node tests, on one real backend.
func TestSanity(t *testing.T) {
	if target == "" {
		t.Skip("set SANITY_BACKEND to <rbd|cephfs|isilon>/<mount|block>[-mnmw] (make sanity runs all)")
	}
	kind, access, _ := strings.Cut(target, "/")
	access, topo := strings.CutSuffix(access, "-topo")
	access, multi := strings.CutSuffix(access, "-mnmw")
	var be config.Backend
	params := map[string]string{}
	switch kind {
	case "rbd":
		be = harness.RBDBackend(t, "sanity-rbd")
		be.Section.(*rbd.Config).Mounter = "rbd-fuse"
	case "cephfs":
		be = harness.CephFSBackend(t, "sanity-cephfs")
		be.Section.(*cephfs.Config).Mounter = "fuse"
	case "isilon":
		sim := harness.StartOneFS(t)
		be = sim.Backend(t, "sanity-isilon")
		// No NFS client in this kernel: the stand-in mounts only what the export lets this
		// node mount, then binds the export's real directory.
		t.Setenv(isilon.StandInEnv, sim.Root)
	default:
		t.Fatalf("unknown SANITY_BACKEND %q", target)
	}
	params["backend"] = be.Name
	t.Cleanup(func() { removeSanityTenants(t, kind) })
	var labels map[string]string
	if topo {
		be.Topology = &config.Topology{NodeSelector: bareMetal}
		labels = bareMetal
	}
	cfg := &config.Config{Backends: []config.Backend{be}}
	d := harness.StartDriverLabelled(t, cfg, driver.ModeAll, "node-1", "127.0.0.1", labels)
	if topo {
		checkTopology(t, d, cfg, params)
	}
	if multi {
		secondNode = harness.StartDriverOn(t, cfg, driver.ModeNode, "node-2", "127.0.0.2")
	}

	dir := t.TempDir()
	sc := sanity.NewTestConfig()
	if multi {
		mnmw := grpc.WithUnaryInterceptor(asMode(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER))
		sc.DialOptions = append(sc.DialOptions, mnmw)
		sc.ControllerDialOptions = append(sc.ControllerDialOptions, mnmw)
	}
	sc.IDGen = missingIDs{like: realVolumeID(t, d, params, access)}
	// The spec asks NodeGetInfo and runs only if the node reports max_volumes_per_node.
	sc.TestNodeVolumeAttachLimit = true
	sc.Address = d.Endpoint
	sc.TargetPath = filepath.Join(dir, "target")
	sc.StagingPath = filepath.Join(dir, "staging")
	sc.TestVolumeParameters = params
	sc.TestVolumeAccessType = access
	sc.TestVolumeSize = 64 << 20
	sc.TestVolumeExpandSize = 128 << 20
	sc.IdempotentCount = 2
	sanity.Test(t, sc)
}

// realVolumeID creates and deletes one volume, so IDGen knows the tenant and location a
// real volume of this backend has.
func realVolumeID(t *testing.T, d *harness.Driver, params map[string]string, access string) volid.Volume {
	t.Helper()
	vc := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	if access == "block" {
		vc.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		vc.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}
	}
	ctx := context.Background()
	rsp, err := d.Controller().CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "sanity-idgen-" + randomHash(), Parameters: params,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}, VolumeCapabilities: []*csi.VolumeCapability{vc}})
	if err != nil {
		t.Fatalf("a volume to learn the ID layout from: %v", err)
	}
	id := rsp.GetVolume().GetVolumeId()
	if _, err := d.Controller().DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatalf("delete %s: %v", id, err)
	}
	v, err := volid.ParseVolume(id)
	if err != nil {
		t.Fatalf("the driver issued %q: %v", id, err)
	}
	return v
}

var _ = ginkgo.ReportAfterSuite("shiphold sanity summary", func(r types.Report) {
	passed, failed, skipped := 0, 0, 0
	var skips []string
	for _, s := range r.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt {
			continue
		}
		switch {
		case s.State == types.SpecStatePassed:
			passed++
		case s.State.Is(types.SpecStateSkipped | types.SpecStatePending):
			skipped++
			skips = append(skips, fmt.Sprintf("  skipped: %s: %s", s.FullText(), strings.TrimSpace(s.Failure.Message)))
		default:
			failed++
		}
	}
	sort.Strings(skips)
	fmt.Println() // Ginkgo's progress dots end without a newline
	for _, s := range skips {
		fmt.Println(s)
	}
	fmt.Printf("sanity %s: %d passed, %d failed, %d skipped\n", target, passed, failed, skipped)
})
