// Package sanity runs the kubernetes-csi sanity suite against shiphold on a real backend.
// Ginkgo runs one suite per process, so each backend/access pair is its own go test run:
//
//	SANITY_BACKEND=rbd/mount go test -tags pacific ./test/sanity/
//
// The run ends with the line "sanity <backend>/<access>: N passed, N failed, N skipped".
package sanity

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

var target = os.Getenv("SANITY_BACKEND")

// TestSanity runs csi-sanity, controller and node tests, on one real backend.
func TestSanity(t *testing.T) {
	if target == "" {
		t.Skip("set SANITY_BACKEND to rbd/mount, rbd/block, cephfs/mount or isilon/mount (make sanity runs all)")
	}
	kind, access, _ := strings.Cut(target, "/")
	var be config.Backend
	params := map[string]string{}
	switch kind {
	case "rbd":
		be = harness.RBDBackend(t, "sanity-rbd")
		be.RBD.Mounter = "rbd-fuse"
	case "cephfs":
		be = harness.CephFSBackend(t, "sanity-cephfs")
		be.CephFS.Mounter = "fuse"
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
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeAll)

	dir := t.TempDir()
	sc := sanity.NewTestConfig()
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
	for _, s := range skips {
		fmt.Println(s)
	}
	fmt.Printf("sanity %s: %d passed, %d failed, %d skipped\n", target, passed, failed, skipped)
})
