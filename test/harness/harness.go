// Package harness gives real-backend tests the local stack: the single-node Ceph started by
// hack/micro-ceph.sh, and a shiphold driver served in-process on a unix socket.
package harness

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
)

// CephDir is where hack/micro-ceph.sh keeps the local cluster.
func CephDir() string {
	if d := os.Getenv("SHIPHOLD_CEPH_DIR"); d != "" {
		return d
	}
	return "/tmp/shiphold-ceph"
}

// Require skips the test when a service is absent, or fails it when the run demands the
// full stack (SHIPHOLD_REQUIRE_STACK=1, as make test sets), so CI cannot pass by skipping.
func Require(t testing.TB, what string, ok bool, hint string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("SHIPHOLD_REQUIRE_STACK") == "1" {
		t.Fatalf("%s is not available (%s) but SHIPHOLD_REQUIRE_STACK=1", what, hint)
	}
	t.Skipf("%s is not available: %s", what, hint)
}

// LocalCeph returns the local cluster's address and admin credentials.
func LocalCeph(t testing.TB) config.CephCluster {
	t.Helper()
	conf := filepath.Join(CephDir(), "ceph.conf")
	fsid, mons := readCephConf(conf)
	Require(t, "local Ceph", fsid != "", "start it with hack/micro-ceph.sh up "+CephDir())
	return config.CephCluster{
		ClusterID: fsid,
		Monitors:  mons,
		Credentials: config.CephCredentials{
			UserID:      "admin",
			KeyringFile: filepath.Join(CephDir(), "ceph.client.admin.keyring"),
		},
	}
}

func readCephConf(path string) (fsid string, mons []string) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "fsid":
			fsid = strings.TrimSpace(v)
		case "mon host":
			mons = v1Addrs(v)
		}
	}
	return fsid, mons
}

// v1Addrs picks the v1 addresses out of a mon host line ("[v2:IP:3300,v1:IP:6789]"): the
// CLI helpers (rbd-fuse, ceph-fuse, mount.ceph) all speak v1.
func v1Addrs(monHost string) []string {
	var out []string
	for _, a := range strings.FieldsFunc(monHost, func(r rune) bool { return r == '[' || r == ']' || r == ',' || r == ' ' }) {
		if addr, ok := strings.CutPrefix(a, "v1:"); ok {
			out = append(out, addr)
		}
	}
	return out
}

// RBDBackend is a config entry for the local cluster's rbd pool.
func RBDBackend(t testing.TB, name string) config.Backend {
	return config.Backend{Name: name, Kind: "rbd", RBD: &config.RBD{CephCluster: LocalCeph(t), Pool: "rbd", Mounter: "auto"}}
}

// CephFSBackend is a config entry for the local cluster's cephfs filesystem.
func CephFSBackend(t testing.TB, name string) config.Backend {
	return config.Backend{Name: name, Kind: "cephfs", CephFS: &config.CephFS{CephCluster: LocalCeph(t), FSName: "cephfs", SubvolumeGroupPrefix: "shiphold-", Mounter: "auto"}}
}

// Driver is an in-process shiphold plugin serving on a unix socket.
type Driver struct {
	Endpoint string
	Socket   string
	Driver   *driver.Driver
	Conn     *grpc.ClientConn
}

// StartDriver serves cfg in the given mode until the test ends, as node-1 at 127.0.0.1.
func StartDriver(t testing.TB, cfg *config.Config, mode driver.Mode) *Driver {
	t.Helper()
	return StartDriverOn(t, cfg, mode, "node-1", "127.0.0.1")
}

// StartDriverOn is StartDriver for another node name and address (a second node plugin).
func StartDriverOn(t testing.TB, cfg *config.Config, mode driver.Mode, nodeName, nodeAddress string) *Driver {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := registry.Open(cfg, mode != driver.ModeNode, mode != driver.ModeController)
	if err != nil {
		t.Fatal(err)
	}
	d, err := driver.New(driver.Options{
		Name: "shiphold.csi.io", Version: "test", Mode: mode, NodeName: nodeName, NodeAddress: nodeAddress,
		Config: cfg, Controllers: b.Controllers, Stagers: b.Stagers,
	})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "shiphold-sock-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx, "unix://"+sock) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("driver did not listen on %s", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		<-served
		b.Close()
		os.RemoveAll(dir)
	})
	return &Driver{Endpoint: "unix://" + sock, Socket: sock, Driver: d, Conn: conn}
}

// Controller and Node are gRPC clients of the in-process driver.
func (d *Driver) Controller() csi.ControllerClient { return csi.NewControllerClient(d.Conn) }
func (d *Driver) Node() csi.NodeClient             { return csi.NewNodeClient(d.Conn) }
