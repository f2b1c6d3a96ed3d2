// Package storm SIGKILLs the real controller plugin at random points of a burst of creates
// and deletes (snapshots and clones included) on every backend kind, restarts it, retries
// every call as a CO would (same names, until it succeeds), and then counts what is left
// on the storage: nothing may be left behind, and nothing may exist twice.
//
// It runs on a private Ceph cluster (harness.StartPrivateCeph), or on the cluster in
// SHIPHOLD_STORM_CEPH_DIR, and the OneFS simulator in-process.
package storm

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// The burst per backend: 96 plain volumes, 16 snapshots and 16 clones (half from a
// snapshot, half from a volume) = 128 creates, then 128 deletes.
const (
	plainVolumes = 96
	chains       = 16
	concurrency  = 16
	volumeBytes  = 16 << 20
	// killsPerPhase bounds the SIGKILLs during the creates, and again during the deletes.
	killsPerPhase = 40
)

// storage counts what a backend holds for one tenant.
type storage interface {
	// census lists the tenant's objects by class ("image", "snapshot", "export", ...).
	census(t *testing.T) map[string][]string
	// settled reports whether background work (mgr tasks, clones) is still running.
	settled(t *testing.T) bool
}

func TestStormKill9(t *testing.T) {
	conf, cluster := stormCluster(t)
	sim := harness.StartOneFS(t)
	run := fmt.Sprintf("%04d", rand.Intn(10000))
	tenant := "storm-" + run
	isi := sim.Backend(t, "storm-isilon")
	cfg := config.Config{Backends: []config.Backend{
		{Name: "storm-rbd", Kind: "rbd", Section: &rbd.Config{Cluster: cluster, Pool: "rbd", Mounter: "rbd-fuse"}},
		{Name: "storm-cephfs", Kind: "cephfs", Section: &cephfs.Config{Cluster: cluster, FSName: "cephfs", SubvolumeGroupPrefix: "shiphold-", Mounter: "fuse"}},
		isi,
	}}
	// The plugin's logs stay when the storm fails, for the post-mortem.
	dir, err := os.MkdirTemp("", "shiphold-storm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	cfgPath := filepath.Join(dir, "config.yaml")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildPlugin(t)
	stores := map[string]storage{
		"rbd":    &rbdStore{conf: conf, ns: tenant},
		"cephfs": &cephfsStore{conf: conf, group: "shiphold-" + tenant},
		"isilon": &isilonStore{sim: sim, dir: "/ifs/data/shiphold/" + tenant},
	}
	// The three kinds storm at once, each its own plugin process killed by its own killer:
	// the run takes as long as the slowest kind, not the sum (make test's time budget).
	for _, kind := range []string{"rbd", "cephfs", "isilon"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			p := &plugin{bin: bin, config: cfgPath, sock: filepath.Join(dir, kind+".sock"), log: filepath.Join(dir, kind+".log"),
				died: make(chan struct{})}
			if err := p.start(); err != nil {
				t.Fatal(err)
			}
			defer p.stop()
			t.Logf("plugin log: %s", p.log)
			storm(t, p, "storm-"+kind, tenant, stores[kind], kind)
		})
	}
}

// stormCluster is a private Ceph, or the cluster SHIPHOLD_STORM_CEPH_DIR points at.
func stormCluster(t *testing.T) (string, ceph.Cluster) {
	if d := os.Getenv("SHIPHOLD_STORM_CEPH_DIR"); d != "" {
		t.Setenv("SHIPHOLD_CEPH_DIR", d)
		return filepath.Join(d, "ceph.conf"), harness.LocalCeph(t)
	}
	pc := harness.StartPrivateCeph(t)
	return pc.Conf, pc.Cluster
}

func storm(t *testing.T, p *plugin, backendName, tenant string, st storage, kind string) {
	conn, err := grpc.NewClient("unix://"+p.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	co := &co{ctrl: csi.NewControllerClient(conn), codes: map[codes.Code]int{}, died: p.died}
	w := newWorkload(backendName, tenant, kind)

	stop := make(chan struct{})
	killer := p.killer(t, killInterval(kind), killsPerPhase, stop)
	start := time.Now()
	w.createAll(t, co)
	created := time.Since(start)
	close(stop)
	<-killer
	failOnCrash(t, p, kind)
	waitSettled(t, st)
	peak := st.census(t)
	dups := duplicates(t, kind, peak, w.expected())

	stop = make(chan struct{})
	killer = p.killer(t, killInterval(kind), killsPerPhase, stop)
	w.deleteAll(t, co)
	close(stop)
	<-killer
	failOnCrash(t, p, kind)
	waitSettled(t, st)
	left := st.census(t)
	leftovers := 0
	for class, objs := range left {
		leftovers += len(objs)
		if len(objs) > 0 {
			t.Errorf("%s left behind: %d %s: %v", kind, len(objs), class, objs)
		}
	}
	t.Logf("%s: creates took %s, answers seen while retrying: %v", kind, created.Round(time.Second), co.seen())
	fmt.Printf("storm %s: kills=%d volumes=%d leftovers=%d duplicates=%d\n", kind, p.kills, w.made(), leftovers, dups)
}

// failOnCrash ends the storm when the plugin died by itself: only the storm's SIGKILLs
// may end it.
func failOnCrash(t *testing.T, p *plugin, kind string) {
	if death := p.crashed(); death != "" {
		fmt.Printf("storm %s: kills=%d plugin crashed by itself\n", kind, p.kills)
		t.Fatalf("%s: %s", kind, death)
	}
}

// killInterval draws the time to the next SIGKILL, scaled to how long the backend's calls
// take (Ceph: up to seconds; the simulated array: milliseconds), so that most calls
// complete between two kills and many are cut in the middle.
func killInterval(kind string) func() time.Duration {
	lo, span := 200, 2300
	if kind == "isilon" {
		lo, span = 30, 270
	}
	return func() time.Duration { return time.Duration(lo+rand.Intn(span)) * time.Millisecond }
}

// waitSettled waits for background work on the storage (the mgr's task queue, clones) to end.
func waitSettled(t *testing.T, st storage) {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		if st.settled(t) {
			return
		}
	}
	t.Logf("background work still running after 5 minutes; counting anyway")
}

// duplicates compares the census at the peak with what the CSI calls made: an object
// there twice, or more objects of a class than calls made, is a duplicate; fewer is a
// create that never succeeded; anything of another class (a trash entry, a temporary
// snapshot) is work not finished, which the final census counts if it stays.
func duplicates(t *testing.T, kind string, census map[string][]string, want map[string]int) int {
	dups := 0
	for class, objs := range census {
		n, counted := want[class]
		seen := map[string]bool{}
		for _, o := range objs {
			if seen[o] {
				dups++
				t.Errorf("%s at the peak: %s %s exists twice", kind, class, o)
			}
			seen[o] = true
		}
		switch {
		case counted && len(seen) > n:
			dups += len(seen) - n
			t.Errorf("%s at the peak: %d %s, %d made through CSI", kind, len(seen), class, n)
		case counted && len(seen) < n:
			t.Errorf("%s at the peak: %d %s, %d made through CSI", kind, len(seen), class, n)
		case !counted && len(objs) > 0:
			t.Logf("%s at the peak: %d %s still being removed: %v", kind, len(objs), class, objs)
		}
	}
	for class, n := range want {
		if _, ok := census[class]; !ok && n > 0 {
			t.Errorf("%s at the peak: no %s, %d made through CSI", kind, class, n)
		}
	}
	return dups
}

// retryBudget is how long a call is retried before the storm calls it stuck.
const retryBudget = 5 * time.Minute

// co retries each call as a CO's sidecar does: same request, until it succeeds.
type co struct {
	ctrl  csi.ControllerClient
	died  <-chan struct{} // the plugin crashed: retrying is pointless, the storm fails
	mu    sync.Mutex
	codes map[codes.Code]int
}

func (c *co) retry(t *testing.T, what string, call func(ctx context.Context) error) {
	backoff := 100 * time.Millisecond
	for deadline := time.Now().Add(retryBudget); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := call(ctx)
		cancel()
		if err == nil {
			return
		}
		c.mu.Lock()
		c.codes[status.Code(err)]++
		c.mu.Unlock()
		if time.Now().After(deadline) {
			t.Errorf("%s: still failing after %s: %v", what, retryBudget, err)
			return
		}
		select {
		case <-c.died:
			return
		case <-time.After(backoff + time.Duration(rand.Intn(100))*time.Millisecond):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (c *co) seen() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for code, n := range c.codes {
		parts = append(parts, fmt.Sprintf("%v=%d", code, n))
	}
	return strings.Join(parts, " ")
}
