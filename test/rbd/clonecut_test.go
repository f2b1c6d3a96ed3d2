package rbdtest

import (
	"encoding/binary"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// A controller killed while it unprotected a copy's temporary snapshot (removing the
// half-made copy) leaves the snapshot "unprotecting" (cls_rbd protection status 1). librbd
// then answers a protect EBUSY and a clone (format 1 on this cluster) EINVAL: in the storm
// test every retry of that copy failed INVALID_ARGUMENT for 5 minutes and left its image
// behind. The snapshot is put in that state here with cls_rbd's set_protection_status, as
// the cut unprotect left it; the copy must then succeed.
func TestRBDRealCopyAfterACutUnprotect(t *testing.T) {
	c := needCeph(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "cutunprot")
	ctx := ctxT(t, 3*time.Minute)
	params := map[string]string{backend.ParamBackend: "rbd-test"}
	src, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "src", Tenant: tenant, RequiredBytes: 8 << 20, Parameters: params})
	if err != nil {
		t.Fatal(err)
	}
	image := "rbd/" + tenant + "/csi-vol-" + src.ID.Hash
	tmp := "csi-tmp-" + volid.Hash("copy")
	c.rbdCLI(t, "snap", "create", image+"@"+tmp)
	c.rbdCLI(t, "snap", "protect", image+"@"+tmp)
	var info struct{ ID string }
	var snaps []struct {
		ID        uint64
		Name      string
		Protected string
	}
	if err := json.Unmarshal([]byte(c.rbdCLI(t, "info", "--format", "json", image)), &info); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(c.rbdCLI(t, "snap", "ls", "--format", "json", image)), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots of %s: %+v, %v", image, snaps, err)
	}
	_, io := rawPool(t, "rbd")
	io.SetNamespace(tenant)
	op := rados.CreateWriteOp()
	defer op.Release()
	op.Exec("rbd", "set_protection_status", append(binary.LittleEndian.AppendUint64(nil, snaps[0].ID), 1)) // UNPROTECTING
	if err := op.Operate(io, "rbd_header."+info.ID, rados.OperationNoFlag); err != nil {
		t.Fatalf("set %s@%s unprotecting: %v", image, tmp, err)
	}
	if out, err := exec.Command("rbd", "-c", c.conf, "clone", image+"@"+tmp, "rbd/"+tenant+"/probe").CombinedOutput(); err == nil || !strings.Contains(string(out), "(22)") {
		t.Fatalf("a clone of the unprotecting snapshot: %v: %s; want EINVAL, as the storm saw", err, out)
	}

	var copied *backend.Volume
	for copied == nil {
		copied, err = ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "copy", Tenant: tenant, RequiredBytes: 8 << 20, Parameters: params, SourceVolume: &src.ID})
		if err != nil && backend.CodeOf(err) != backend.Pending {
			t.Fatalf("copy from a source whose temporary snapshot was left unprotecting: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if left := c.rbdCLI(t, "snap", "ls", image); strings.Contains(left, tmp) {
		t.Errorf("the copy is done, its temporary snapshot stays:\n%s", left)
	}
	for _, id := range []volid.Volume{copied.ID, src.ID} {
		if err := ctl.DeleteVolume(ctx, id, nil); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
}
