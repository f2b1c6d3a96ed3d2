package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

// cephUser creates a cephx user of the test's own, so that its sessions are the plugin's,
// and writes its keyring; the backends of cfg use it.
func cephUser(t *testing.T, pc *harness.PrivateCluster, cfg *config.Config, name string) (keyring string) {
	t.Helper()
	keyring = filepath.Join(t.TempDir(), "keyring")
	if out, err := pc.Ceph("auth", "get-or-create", "client."+name, "mon", "allow *", "osd", "allow *", "mgr", "allow *", "mds", "allow *", "-o", keyring); err != nil {
		t.Fatalf("create client.%s: %v\n%s", name, err, out)
	}
	for i := range cfg.Backends {
		creds := ceph.DefaultCredentials{UserID: name, KeyringFile: keyring}
		switch b := cfg.Backends[i].Section.(type) {
		case *rbd.Config:
			b.Credentials = creds
		case *cephfs.Config:
			b.Credentials = creds
		}
	}
	return keyring
}

// sessions returns the client addresses (ip:port/nonce) the monitor has sessions with for
// entity, i.e. the plugin's live rados handles of that user.
func sessions(t *testing.T, pc *harness.PrivateCluster, entity string) []string {
	t.Helper()
	out, err := pc.Ceph("tell", "mon.a", "sessions", "--format", "json")
	if err != nil {
		t.Fatalf("mon sessions: %v\n%s", err, out)
	}
	var list []struct {
		EntityName string `json:"entity_name"`
		Addrs      struct {
			Addrvec []struct {
				Addr  string `json:"addr"`
				Nonce uint32 `json:"nonce"`
			} `json:"addrvec"`
		} `json:"addrs"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("mon sessions: %v: %s", err, out)
	}
	var addrs []string
	for _, s := range list {
		if s.EntityName == entity && len(s.Addrs.Addrvec) > 0 {
			a := s.Addrs.Addrvec[0]
			addrs = append(addrs, fmt.Sprintf("%s/%d", a.Addr, a.Nonce))
		}
	}
	return addrs
}

// runBlocklist blocklists the plugin's rados client, as an operator fencing it (or the
// cluster, after a network partition) would: the plugin must stop reusing the dead handle
// and serve RBD again with a new one, without a restart. CephFS is not affected (the mgr
// does its work), so RBD shows it.
func runBlocklist(t *testing.T, pc *harness.PrivateCluster) {
	waitHealthy(t, pc)
	cfg := pluginConfig(t, pc)
	cephUser(t, pc, cfg, "fault-blocklist")
	p := startPlugin(t, cfg)
	b := &burst{ctrl: p.controller(), backend: "fault-rbd", tenant: "fault-blocklist", prefix: "fault-blocklist",
		n: 1, concurrency: 1, deadline: 8 * time.Second, budget: time.Minute, bytes: 64 << 20, errors: map[string]int{}}
	before, err := b.createAll()
	if err != nil {
		t.Fatal(err)
	}
	addrs := sessions(t, pc, "client.fault-blocklist")
	if len(addrs) == 0 {
		t.Fatal("the plugin has no monitor session to blocklist")
	}
	for _, a := range addrs {
		if out, err := pc.Ceph("osd", "blocklist", "add", a); err != nil {
			t.Fatalf("blocklist %s: %v\n%s", a, err, out)
		}
		t.Cleanup(func() { pc.Ceph("osd", "blocklist", "rm", a) })
	}
	t.Logf("blocklisted %v", addrs)

	b.prefix = "fault-blocklist-after"
	start := time.Now()
	after, err := b.createAll()
	recovered := err == nil
	if err != nil {
		t.Errorf("after the blocklist: %v (errors seen: %s)", err, b.errorSummary())
	}
	if err := b.deleteAll(append(before, after...)); err != nil {
		t.Errorf("deletes: %v", err)
	}
	leftovers := countVolumes(t, pc, "rbd", b.tenant)
	fmt.Printf("blocklist rbd: crashes=%d leftovers=%d recovered=%s in %s\n", p.crashCount(), leftovers, yesNo(recovered), time.Since(start).Round(time.Second))
	if leftovers != 0 || p.crashCount() != 0 {
		t.Errorf("leftovers=%d crashes=%d", leftovers, p.crashCount())
	}
}

// runRotateKey replaces the plugin user's key in Ceph and in its keyring file: new
// requests must use the new key, and the handle made with the old key must be shut down.
func runRotateKey(t *testing.T, pc *harness.PrivateCluster) {
	waitHealthy(t, pc)
	cfg := pluginConfig(t, pc)
	keyring := cephUser(t, pc, cfg, "fault-rotate")
	p := startPlugin(t, cfg)
	b := &burst{ctrl: p.controller(), backend: "fault-rbd", tenant: "fault-rotate", prefix: "fault-rotate",
		n: 1, concurrency: 1, deadline: 8 * time.Second, budget: time.Minute, bytes: 64 << 20, errors: map[string]int{}}
	before, err := b.createAll()
	if err != nil {
		t.Fatal(err)
	}
	// The CephFS backend of the same user connects too (as the quota ledger's background
	// usage reading does at its own time) and is not used again after the rotation: its
	// old-key handle must go all the same.
	ctx, cancel := context.WithTimeout(context.Background(), b.deadline)
	_, err = b.ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"backend": "fault-fs"}})
	cancel()
	if err != nil {
		t.Fatalf("GetCapacity on the CephFS backend: %v", err)
	}
	old := sessions(t, pc, "client.fault-rotate")
	if len(old) < 2 {
		t.Fatalf("want the RBD and the CephFS backend's handles connected before the rotation, the monitor has %v", old)
	}

	key, err := exec.Command("ceph-authtool", "--gen-print-key").Output()
	if err != nil {
		t.Fatal(err)
	}
	rotated := fmt.Sprintf("[client.fault-rotate]\n\tkey = %s\n\tcaps mds = \"allow *\"\n\tcaps mgr = \"allow *\"\n\tcaps mon = \"allow *\"\n\tcaps osd = \"allow *\"\n", strings.TrimSpace(string(key)))
	if err := os.WriteFile(keyring, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := pc.Ceph("auth", "import", "-i", keyring); err != nil {
		t.Fatalf("rotate the key: %v\n%s", err, out)
	}

	b.prefix = "fault-rotate-after"
	after, err := b.createAll()
	recovered := err == nil
	if err != nil {
		t.Errorf("with the rotated key: %v (errors seen: %s)", err, b.errorSummary())
	}
	stale := old
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		stale = intersect(old, sessions(t, pc, "client.fault-rotate"))
		if len(stale) == 0 {
			break
		}
	}
	if err := b.deleteAll(append(before, after...)); err != nil {
		t.Errorf("deletes: %v", err)
	}
	leftovers := countVolumes(t, pc, "rbd", b.tenant)
	fmt.Printf("rotate-key rbd: crashes=%d leftovers=%d recovered=%s old-handles=%d\n", p.crashCount(), leftovers, yesNo(recovered), len(stale))
	if len(stale) > 0 {
		t.Errorf("the handle made with the old key is still connected: %v", stale)
	}
	if leftovers != 0 || p.crashCount() != 0 {
		t.Errorf("leftovers=%d crashes=%d", leftovers, p.crashCount())
	}
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
			}
		}
	}
	return out
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
