package adopttest

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// BenchmarkRBDListVolumesBesideForeignImages: what finding adopted images costs a listing.
// ListVolumes reads every image shiphold did not create for a request record, so its time
// grows with them: the figures are for the pool as it is, then with 32 and 128 more foreign
// images (1 MiB each, in the default namespace, no record).
func BenchmarkRBDListVolumesBesideForeignImages(b *testing.B) {
	harness.RequireCommand(b, "rbd", "apt-get install ceph-common, or hack/install-deps.sh")
	cfg := &config.Config{Backends: []config.Backend{harness.RBDBackend(b, "rbd1")}}
	reg, err := registry.Open(cfg, true, false)
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	ctrl := reg.Controllers["rbd1"]
	made := 0
	prefix := "foreign-" + suffix() + "-"
	b.Cleanup(func() {
		for i := 0; i < made; i++ {
			exec.Command("rbd", "rm", "--no-progress", fmt.Sprintf("rbd/%s%d", prefix, i)).Run()
		}
	})
	for _, foreign := range []int{0, 32, 128} {
		for ; made < foreign; made++ {
			if out, err := exec.Command("rbd", "create", "--size", "1M", fmt.Sprintf("rbd/%s%d", prefix, made)).CombinedOutput(); err != nil {
				b.Fatalf("rbd create: %v\n%s", err, out)
			}
		}
		b.Run(fmt.Sprintf("foreign=%d", foreign), func(b *testing.B) {
			for b.Loop() {
				if _, err := ctrl.ListVolumes(ctxT(b), ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
