package rbdtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

// A CSI cleanup deletes a restored volume, then at once the snapshot it came from, then the
// source volume. The mgr purges the restored clone meanwhile, and librbd's listing of the
// snapshot's clones answers ENOENT when the purge lands between its two reads (the clones
// attached, then their names): that read as "snapshot already gone", DeleteSnapshot
// answered OK with the snapshot in place, and the source's delete failed with "still has
// 1 snapshot" (csi-sanity rbd/mount, once). The race hits about one purge in eight here, so
// the cycle runs a number of times.
func TestRBDRealSnapshotDeleteRightAfterItsCloneDelete(t *testing.T) {
	c := needCeph(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "snaprace")
	ctx := ctxT(t, 5*time.Minute)
	params := map[string]string{backend.ParamBackend: "rbd-test"}
	for i := 0; i < 20; i++ {
		src, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: fmt.Sprintf("src-%d", i), Tenant: tenant, RequiredBytes: 8 << 20, Parameters: params})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := ctl.CreateSnapshot(ctx, src.ID, fmt.Sprintf("snap-%d", i), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		clone, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: fmt.Sprintf("restore-%d", i), Tenant: tenant, RequiredBytes: 8 << 20, Parameters: params, SourceSnapshot: &snap.ID})
		if err != nil {
			t.Fatal(err)
		}
		if err := ctl.DeleteVolume(ctx, clone.ID, nil); err != nil {
			t.Fatalf("round %d: delete of the restored volume: %v", i, err)
		}
		err = ctl.DeleteSnapshot(ctx, snap.ID, nil)
		if err == nil || backend.IsNotFound(err) {
			if _, gerr := ctl.GetSnapshot(ctx, snap.ID); !backend.IsNotFound(gerr) {
				t.Fatalf("round %d: DeleteSnapshot answered %v (done, for the CO), yet the snapshot is still there (GetSnapshot: %v)", i, err, gerr)
			}
		}
		// A Pending answer is a retry's business, as the CO's would be.
		for backend.CodeOf(err) == backend.Pending {
			time.Sleep(200 * time.Millisecond)
			err = ctl.DeleteSnapshot(ctx, snap.ID, nil)
		}
		if err != nil {
			t.Fatalf("round %d: delete of the snapshot: %v", i, err)
		}
		if err := ctl.DeleteVolume(ctx, src.ID, nil); err != nil {
			t.Fatalf("round %d: delete of the source after its snapshot's delete: %v", i, err)
		}
	}
}
