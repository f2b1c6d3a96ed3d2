package registry

import (
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

// TestKindsAllocate pins how each kind sizes a volume, as its CreateVolume does: RBD rounds
// up to whole MiB; a clone on RBD or Isilon keeps its source's size when that is larger, a
// CephFS clone gets the requested size as its quota.
func TestKindsAllocate(t *testing.T) {
	kinds := Kinds()
	for _, tc := range []struct {
		kind             string
		required, source int64
		want             int64
	}{
		{backend.KindRBD, 1, 0, 1 << 20},
		{backend.KindRBD, 1<<20 + 1, 0, 2 << 20},
		{backend.KindRBD, 1 << 20, 5 << 20, 5 << 20},
		{backend.KindCephFS, 1<<20 + 1, 0, 1<<20 + 1},
		{backend.KindCephFS, 1 << 20, 5 << 20, 1 << 20},
		{backend.KindIsilon, 1000, 0, 1000},
		{backend.KindIsilon, 1000, 4000, 4000},
	} {
		if got := kinds[tc.kind].Allocated(tc.required, tc.source); got != tc.want {
			t.Errorf("%s: Allocated(%d, %d) = %d, want %d", tc.kind, tc.required, tc.source, got, tc.want)
		}
	}
}

// TestOpenRefusesUnknownKinds: a kind no package registered is refused by name.
func TestOpenRefusesUnknownKinds(t *testing.T) {
	if _, err := lookup("lustre"); err == nil || err.Error() != `unknown kind "lustre"` {
		t.Fatalf("lookup(lustre) = %v", err)
	}
	for _, k := range []string{backend.KindRBD, backend.KindCephFS, backend.KindIsilon} {
		if _, err := lookup(k); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
}
