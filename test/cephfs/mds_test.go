package cephfstest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// mdsRecovery bounds how long creates may fail while the MDS takes its rank back (replay,
// reconnect, rejoin) on a loaded single node.
const mdsRecovery = 2 * time.Minute

// TestCephFSRealMDSRestartAndEviction: the controller reads and writes its records through
// a libcephfs mount it keeps. That mount must outlive what happens to an MDS: a failover
// (the rank fails and is taken again), a restart of the daemon, and an eviction of the
// client (blocklisted: the mount is finished and must be replaced), with no restart of
// the controller. Runs on a private cluster, since it fails and kills the MDS.
func TestCephFSRealMDSRestartAndEviction(t *testing.T) {
	pc := harness.StartPrivateCeph(t)
	cfg := &config.Backend{Name: "cephfs-mds", Kind: backend.KindCephFS, Section: &cephfs.Config{
		Cluster: pc.Cluster, FSName: fsName, SubvolumeGroupPrefix: "mds-", Mounter: cephfs.MounterAuto}}
	conns := ceph.NewConnections()
	t.Cleanup(conns.Close)
	ctrl, err := cephfs.NewController(cfg, conns)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	create := func(step string) *backend.Volume {
		t.Helper()
		n++
		req := &backend.VolumeRequest{Name: fmt.Sprintf("pvc-mds-%d", n), Tenant: "t", RequiredBytes: 16 << 20, Parameters: map[string]string{}}
		start := time.Now()
		for tries := 1; ; tries++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			v, err := ctrl.CreateVolume(ctx, req)
			cancel()
			if err == nil {
				t.Logf("%s: CreateVolume done after %d tries, %s", step, tries, time.Since(start).Round(time.Millisecond))
				return v
			}
			// A CO retries what is unavailable.
			if c := backend.CodeOf(err); c != backend.Unavailable || time.Since(start) > mdsRecovery {
				t.Fatalf("%s: CreateVolume: %v (code %v) after %s", step, err, c, time.Since(start).Round(time.Second))
			}
			t.Logf("%s: try %d: %v", step, tries, err)
			time.Sleep(time.Second)
		}
	}
	vols := []*backend.Volume{create("before")}
	first := adminSessions(t, pc)
	if len(first) != 1 {
		t.Fatalf("admin sessions on the MDS: %v, want the controller's one mount", first)
	}

	if out, err := pc.Ceph("mds", "fail", "a"); err != nil {
		t.Fatalf("ceph mds fail a: %v %s", err, out)
	}
	vols = append(vols, create("after a failover"))

	pid := pc.PID(t, harness.DaemonMDS)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if out, err := exec.Command("ceph-mds", "-c", pc.Conf, "-i", "a").CombinedOutput(); err != nil {
		t.Fatalf("restart ceph-mds: %v %s", err, out)
	}
	vols = append(vols, create("after a restart of the MDS"))

	evicted := adminSessions(t, pc)
	for _, id := range evicted {
		if out, err := pc.Ceph("tell", "mds.a", "client", "evict", "id="+strconv.FormatInt(id, 10)); err != nil {
			t.Fatalf("evict client %d: %v %s", id, err, out)
		}
	}
	vols = append(vols, create("after the eviction of its client"))
	if now := adminSessions(t, pc); len(now) != 1 || slices.Contains(evicted, now[0]) {
		t.Fatalf("admin sessions %v after evicting %v: want one new mount", now, evicted)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, v := range vols {
		if got, err := ctrl.GetVolume(ctx, v.ID, nil); err != nil || got.RequestName != v.RequestName {
			t.Errorf("GetVolume %s: %+v %v", v.ID, got, err)
		}
		if err := ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
			t.Errorf("DeleteVolume %s: %v", v.ID, err)
		}
	}
}

// adminSessions are the ids of the MDS sessions of user admin: the controller's mounts.
func adminSessions(t *testing.T, pc *harness.PrivateCluster) []int64 {
	t.Helper()
	// stdout alone: ceph tell writes its client's log lines (ms_handle_reset) to stderr.
	cmd := exec.Command("ceph", "-c", pc.Conf, "--connect-timeout", "15", "tell", "mds.a", "session", "ls", "--format=json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("session ls: %v %s", err, stderr.String())
	}
	var sessions []struct {
		ID       int64          `json:"id"`
		Metadata map[string]any `json:"client_metadata"`
	}
	if err := json.Unmarshal(out, &sessions); err != nil {
		t.Fatalf("session ls: %v: %s", err, out)
	}
	var ids []int64
	for _, s := range sessions {
		if s.Metadata["entity_id"] == "admin" {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("process %d still there after SIGKILL", pid)
		}
	}
}
