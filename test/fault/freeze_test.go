package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// Burst size and timing; the defaults keep a run to minutes. The operator's bad day of
// issue 9 is SHIPHOLD_FAULT_BURST=128 SHIPHOLD_FAULT_CONCURRENCY=32.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// librados gives up on a call after these (set in the plugin's ceph.conf); the freezes
// outlast them so that the calls librados abandons meet the late answers.
const radosOpTimeout = 10 * time.Second

type scenario struct {
	backend string // "rbd" or "cephfs"
	daemon  string // harness.DaemonMon, ...
	phase   string // "create" or "delete": when the daemon is frozen
}

// TestFaults runs the fault scenarios on one private cluster, one after the other:
// freezes (TestFaults/freeze/<backend>/<daemon>) and stale connections
// (TestFaults/blocklist, TestFaults/rotate-key).
func TestFaults(t *testing.T) {
	pc := harness.StartPrivateCeph(t)
	for _, s := range []scenario{
		{"cephfs", harness.DaemonMgr, "delete"},
		{"cephfs", harness.DaemonMon, "create"},
		{"cephfs", harness.DaemonOSD, "delete"},
		{"rbd", harness.DaemonMon, "create"},
		{"rbd", harness.DaemonOSD, "delete"},
	} {
		t.Run("freeze/"+s.backend+"/"+daemonName(s.daemon), func(t *testing.T) { runFreeze(t, pc, s) })
	}
	t.Run("blocklist", func(t *testing.T) { runBlocklist(t, pc) })
	t.Run("rotate-key", func(t *testing.T) { runRotateKey(t, pc) })
}

// runFreeze freezes one Ceph daemon a backend depends on, mid-burst, for longer than the
// request deadline and the librados timeouts, under the real plugin process: it must not
// crash, must leave no volume behind once the CO's retries are done, and must serve again
// without a restart.
func pluginConfig(t *testing.T, pc *harness.PrivateCluster) *config.Config {
	conf := filepath.Join(t.TempDir(), "client.conf")
	secs := strconv.Itoa(int(radosOpTimeout.Seconds()))
	if err := os.WriteFile(conf, []byte("[global]\nrados mon op timeout = "+secs+"\nrados osd op timeout = "+secs+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster := pc.Cluster
	cluster.ConfFile = conf
	return &config.Config{Backends: []config.Backend{
		{Name: "fault-fs", Kind: backend.KindCephFS, CephFS: &config.CephFS{CephCluster: cluster, FSName: "cephfs", SubvolumeGroupPrefix: "shiphold-"}},
		{Name: "fault-rbd", Kind: backend.KindRBD, RBD: &config.RBD{CephCluster: cluster, Pool: "rbd"}},
	}}
}

func runFreeze(t *testing.T, pc *harness.PrivateCluster, s scenario) {
	waitHealthy(t, pc)
	p := startPlugin(t, pluginConfig(t, pc))
	firstPID := p.pid()
	deadline := envDuration("SHIPHOLD_FAULT_DEADLINE", 8*time.Second)
	freeze := envDuration("SHIPHOLD_FAULT_FREEZE", radosOpTimeout+deadline)
	b := &burst{
		ctrl: p.controller(), backend: map[string]string{"rbd": "fault-rbd", "cephfs": "fault-fs"}[s.backend],
		tenant: "fault-" + s.daemon[:3], prefix: fmt.Sprintf("fault-%s-%s", s.backend, s.daemon[:3]),
		n: envInt("SHIPHOLD_FAULT_BURST", 24), concurrency: envInt("SHIPHOLD_FAULT_CONCURRENCY", 8),
		deadline: deadline, budget: 5 * time.Minute, bytes: 64 << 20, errors: map[string]int{},
	}
	frozen := make(chan struct{})
	var resumed time.Time
	trigger := func() {
		t.Logf("freezing %s for %s after %d %ss", s.daemon, freeze, b.done.Load(), s.phase)
		resume := pc.Freeze(t, s.daemon)
		resumed = time.Now().Add(freeze)
		close(frozen)
		time.AfterFunc(freeze, func() { resume(); t.Logf("resumed %s", s.daemon) })
	}

	start := time.Now()
	var stop func()
	if s.phase == "create" {
		b.done.Store(0)
		stop = b.whenDone(b.n/4, trigger)
	}
	ids, err := b.createAll()
	if s.phase == "create" {
		stop()
	}
	if err != nil {
		t.Errorf("creates: %v", err)
	}
	t.Logf("%d creates in %s", b.n, time.Since(start).Round(time.Second))
	if s.phase == "delete" {
		b.done.Store(0)
		stop = b.whenDone(b.n/4, trigger)
	}
	start = time.Now()
	if err := b.deleteAll(ids); err != nil {
		t.Errorf("deletes: %v", err)
	}
	stop()
	t.Logf("%d deletes in %s; errors seen: %s", b.n, time.Since(start).Round(time.Second), b.errorSummary())
	select {
	case <-frozen:
		t.Logf("the last volume was done %s after %s resumed", b.last.Sub(resumed).Round(time.Second), s.daemon)
	default:
		t.Errorf("the burst ended before %s was frozen", s.daemon)
	}
	pc.ResumeAll()

	leftovers := countVolumes(t, pc, s.backend, b.tenant)
	recovered := servesAgain(t, b)
	crashes := p.crashCount()
	sameProcess := crashes == 0 && p.pid() == firstPID
	fmt.Printf("freeze %s %s: crashes=%d leftovers=%d recovered=%s\n", s.backend, daemonName(s.daemon), crashes, leftovers, yesNo(recovered && sameProcess))
	if crashes > 0 {
		t.Errorf("the plugin died %d times:\n%s", crashes, p.crashReports())
	}
	if leftovers != 0 {
		t.Errorf("%d volumes left in tenant %s after every delete succeeded", leftovers, b.tenant)
	}
	if !recovered {
		t.Errorf("the plugin did not serve a new volume after %s resumed", s.daemon)
	}
}

func daemonName(d string) string { return d[:3] }

// servesAgain creates and deletes one more volume with the same process, retrying for a
// minute as a CO would while Ceph settles after the freeze.
func servesAgain(t *testing.T, b *burst) bool {
	after := &burst{ctrl: b.ctrl, backend: b.backend, tenant: b.tenant, prefix: b.prefix + "-after",
		n: 1, concurrency: 1, deadline: b.deadline, budget: time.Minute, bytes: b.bytes, errors: map[string]int{}}
	ids, err := after.createAll()
	if err == nil {
		err = after.deleteAll(ids)
	}
	if err != nil {
		t.Logf("after the freeze: %v", err)
		return false
	}
	return true
}

// countVolumes counts what shiphold left in a tenant: subvolumes of its group, or images
// and trash entries of its RADOS namespace.
func countVolumes(t *testing.T, pc *harness.PrivateCluster, kind, tenant string) int {
	t.Helper()
	var cmds [][]string
	switch kind {
	case "cephfs":
		cmds = [][]string{{"ceph", "fs", "subvolume", "ls", "cephfs", "--group_name", "shiphold-" + tenant, "--format", "json"}}
	case "rbd":
		cmds = [][]string{
			{"rbd", "ls", "--pool", "rbd", "--namespace", tenant, "--format", "json"},
			{"rbd", "trash", "ls", "--pool", "rbd", "--namespace", tenant, "--format", "json"},
		}
	}
	n := 0
	for _, c := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, c[0], append([]string{"-c", pc.Conf}, c[1:]...)...).Output()
		cancel()
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		var list []json.RawMessage
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
		if len(list) > 0 {
			t.Logf("%v: %s", c[:3], out)
		}
		n += len(list)
	}
	return n
}

// waitHealthy waits until every PG is active again, so one scenario's freeze does not
// become the next one's.
func waitHealthy(t *testing.T, pc *harness.PrivateCluster) {
	t.Helper()
	end := time.Now().Add(3 * time.Minute)
	for {
		out, err := pc.Ceph("pg", "stat", "--format", "json")
		var st struct {
			PGSummary struct {
				NumPGByState []struct {
					Name string `json:"name"`
					Num  int    `json:"num"`
				} `json:"num_pg_by_state"`
				NumPGs int `json:"num_pgs"`
			} `json:"pg_summary"`
		}
		if err == nil && json.Unmarshal(out, &st) == nil {
			active := 0
			for _, s := range st.PGSummary.NumPGByState {
				if s.Name == "active+clean" {
					active += s.Num
				}
			}
			if st.PGSummary.NumPGs > 0 && active == st.PGSummary.NumPGs {
				return
			}
		}
		if time.Now().After(end) {
			t.Fatalf("private Ceph not healthy after 3 minutes: %v %s", err, out)
		}
		time.Sleep(time.Second)
	}
}
