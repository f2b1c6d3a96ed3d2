package rbdtest

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend"
)

// The mgr's rbd_support module answers `rbd task add trash remove` for an image ID whose
// purge it finished lately (one of its last 50 tasks) with that finished task, and queues
// nothing. In the storm test two trash entries outlived their finished purges (a killed
// controller's delete, retried, moved the image's name to the trash again as the purge
// ran); every sweep queued their purge, was answered with the finished task, and listed
// them "purge queued" for the whole 5 minutes. Here the entry is put back with cls_rbd's
// trash_add under the ID of an image the mgr has just purged; the sweep must remove it.
func TestRBDRealSweepRemovesAnEntryTheMgrWillNotPurgeAgain(t *testing.T) {
	c := needCeph(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "replay")
	ctx := ctxT(t, 3*time.Minute)
	v, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "replayed", Tenant: tenant, RequiredBytes: 8 << 20,
		Parameters: map[string]string{backend.ParamBackend: "rbd-test"}})
	if err != nil {
		t.Fatal(err)
	}
	image := "rbd/" + tenant + "/csi-vol-" + v.ID.Hash
	var info struct{ ID string }
	if err := json.Unmarshal([]byte(c.rbdCLI(t, "info", "--format", "json", image)), &info); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	trash := func() string { return strings.TrimSpace(c.rbdCLI(t, "trash", "ls", "rbd/"+tenant)) }
	for deadline := time.Now().Add(2 * time.Minute); trash() != ""; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the mgr did not purge %s in 2 minutes: trash %q", image, trash())
		}
	}

	// cls_rbd trash_add(id, TrashImageSpec{source user, name, deletion and deferment
	// times 0, state moving}), the spec encoded as Ceph's ENCODE_START(2, 1) does: as a
	// retried delete's move, cut short, leaves it (librbd refuses to remove it, EUCLEAN).
	name := "csi-vol-" + v.ID.Hash
	spec := []byte{0} // source: user
	spec = binary.LittleEndian.AppendUint32(spec, uint32(len(name)))
	spec = append(spec, name...)
	spec = append(spec, make([]byte, 16)...) // deletion_time, deferment_end_time (utime_t: sec, nsec)
	spec = append(spec, 1)                   // state: moving
	in := binary.LittleEndian.AppendUint32(nil, uint32(len(info.ID)))
	in = append(in, info.ID...)
	in = append(in, 2, 1)
	in = binary.LittleEndian.AppendUint32(in, uint32(len(spec)))
	in = append(in, spec...)
	_, io := rawPool(t, "rbd")
	io.SetNamespace(tenant)
	op := rados.CreateWriteOp()
	defer op.Release()
	op.Exec("rbd", "trash_add", in)
	if err := op.Operate(io, "rbd_trash", rados.OperationNoFlag); err != nil {
		t.Fatalf("put trash entry %s back: %v", info.ID, err)
	}
	if got := trash(); !strings.Contains(got, info.ID) {
		t.Fatalf("trash after trash_add: %q, want entry %s", got, info.ID)
	}

	// Three sweeps, as the controller makes them (at start-up, then every 2 minutes).
	var states []string
	for sweep := 0; sweep < 3 && trash() != ""; sweep++ {
		left, err := ctl.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range left {
			states = append(states, l.State)
		}
		time.Sleep(2 * time.Second)
	}
	if got := trash(); got != "" {
		t.Fatalf("after three sweeps the trash still holds %q; the sweeps said %q", got, states)
	}
}
