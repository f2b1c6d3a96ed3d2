package cephfstest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// cephJSON runs a ceph command against the test cluster and decodes its JSON answer.
func cephJSON(t *testing.T, out any, args ...string) error {
	t.Helper()
	b, err := exec.Command("ceph", append(append([]string{"--connect-timeout", "15"}, args...), "--format", "json")...).CombinedOutput()
	if err != nil {
		return &cliError{args: args, out: string(b)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type cliError struct {
	args []string
	out  string
}

func (e *cliError) Error() string { return "ceph " + strings.Join(e.args, " ") + ": " + e.out }

func snapshotNames(t *testing.T, group, sub string) []string {
	t.Helper()
	var snaps []struct{ Name string }
	if err := cephJSON(t, &snaps, "fs", "subvolume", "snapshot", "ls", fsName, sub, "--group_name", group); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	return out
}

// A volume-to-volume clone whose controller died after the clone finished but before the
// clone's record was written is deleted by the CO's retry; its temporary snapshot on the
// source must go with it, or the source can never be fully removed.
func TestCephFSRealUnrecordedCloneTakesItsSnapshot(t *testing.T) {
	e := needCeph(t)
	ctx := ctxT(t)
	tenant := "leak-a"
	src, err := e.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-leak-src", Tenant: tenant, RequiredBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), src.ID, nil) })
	group, srcSub := src.Context["subvolumeGroup"], src.Context["subvolumeName"]
	clone := volid.Volume{Backend: src.ID.Backend, Tenant: tenant, Location: src.ID.Location, Hash: volid.Hash("pvc-leak-clone")}
	tmp, target := "csi-clone-"+clone.Hash, "csi-vol-"+clone.Hash
	// What CreateVolume had done when it was killed: the temporary snapshot and the clone.
	if err := cephJSON(t, nil, "fs", "subvolume", "snapshot", "create", fsName, srcSub, tmp, "--group_name", group); err != nil {
		t.Fatal(err)
	}
	if err := cephJSON(t, nil, "fs", "subvolume", "snapshot", "clone", fsName, srcSub, tmp, target, "--group_name", group, "--target_group_name", group); err != nil {
		t.Fatal(err)
	}
	waitClone(t, group, target)
	if err := e.ctrl.DeleteVolume(ctx, clone, nil); err != nil {
		t.Fatalf("DeleteVolume of the unrecorded clone: %v", err)
	}
	for _, s := range snapshotNames(t, group, srcSub) {
		if s == tmp {
			t.Fatalf("temporary snapshot %s@%s outlived its clone", srcSub, tmp)
		}
	}
}

// Deleting a source volume removes the temporary clone snapshots whose clone no longer
// exists; otherwise Ceph keeps the source for ever in state snapshot-retained.
func TestCephFSRealDeleteSourceDropsOrphanCloneSnapshots(t *testing.T) {
	e := needCeph(t)
	ctx := ctxT(t)
	src, err := e.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-orphan-src", Tenant: "leak-b", RequiredBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	group, srcSub := src.Context["subvolumeGroup"], src.Context["subvolumeName"]
	orphan := "csi-clone-" + volid.Hash("pvc-clone-long-gone")
	if err := cephJSON(t, nil, "fs", "subvolume", "snapshot", "create", fsName, srcSub, orphan, "--group_name", group); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("ceph", "fs", "subvolume", "snapshot", "rm", fsName, srcSub, orphan, "--group_name", group, "--force").Run()
	})
	if err := e.ctrl.DeleteVolume(ctx, src.ID, nil); err != nil {
		t.Fatal(err)
	}
	var subs []struct{ Name string }
	if err := cephJSON(t, &subs, "fs", "subvolume", "ls", fsName, "--group_name", group); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.Name == srcSub {
			var info map[string]any
			cephJSON(t, &info, "fs", "subvolume", "info", fsName, srcSub, "--group_name", group)
			t.Fatalf("source %s still exists after DeleteVolume (state %v, snapshots %v)", srcSub, info["state"], snapshotNames(t, group, srcSub))
		}
	}
}

func waitClone(t *testing.T, group, sub string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		var st struct {
			Status struct{ State string } `json:"status"`
		}
		if err := cephJSON(t, &st, "fs", "clone", "status", fsName, sub, "--group_name", group); err != nil {
			t.Fatal(err)
		}
		if st.Status.State == "complete" {
			return
		}
	}
	t.Fatalf("clone %s/%s did not complete", group, sub)
}
