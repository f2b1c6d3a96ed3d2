// Package harness gives real-backend tests the local stack: the single-node Ceph started by
// hack/micro-ceph.sh, and a shiphold driver served in-process on a unix socket.
package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/prereq"
)

// CephDir is where hack/micro-ceph.sh keeps the local cluster: $SHIPHOLD_CEPH_DIR, else the
// directory of $CEPH_CONF, else /tmp/shiphold-ceph (hack/with-ceph.sh sets both).
func CephDir() string {
	if d := os.Getenv("SHIPHOLD_CEPH_DIR"); d != "" {
		return d
	}
	if c := os.Getenv("CEPH_CONF"); c != "" {
		return filepath.Dir(c)
	}
	return "/tmp/shiphold-ceph"
}

// CephConf is the local cluster's ceph.conf, for the ceph and rbd CLIs (-c).
func CephConf() string { return filepath.Join(CephDir(), "ceph.conf") }

// The prerequisite gate lives in test/prereq (importable by every test package); these are
// its names here, where most tests look for them.
var (
	StackRequired  = prereq.StackRequired
	Require        = prereq.Require
	RequireRoot    = prereq.RequireRoot
	RequireCommand = prereq.RequireCommand
)

// LocalCeph returns the local cluster's address and admin credentials after checking that
// it answers; a cluster that is absent or does not answer is a missing prerequisite.
func LocalCeph(t testing.TB) ceph.Cluster {
	t.Helper()
	conf := CephConf()
	start := "start it with MON_IP=<ip> hack/micro-ceph.sh up " + CephDir() + " (or run under hack/with-ceph.sh)"
	_, err := os.Stat(conf)
	Require(t, "local Ceph", err == nil, fmt.Sprintf("%v: %s", err, start))
	fsid, mons := readCephConf(conf)
	Require(t, "local Ceph", fsid != "" && len(mons) > 0, conf+" names no fsid and monitor: "+start)
	keyring := filepath.Join(CephDir(), "ceph.client.admin.keyring")
	_, err = os.Stat(keyring)
	Require(t, "local Ceph admin keyring", err == nil, fmt.Sprintf("%v: %s", err, start))
	err = cephAnswers(conf)
	Require(t, "local Ceph", err == nil, fmt.Sprintf("%v: %s", err, start))
	return ceph.Cluster{
		ClusterID: fsid,
		Monitors:  mons,
		Credentials: ceph.DefaultCredentials{
			UserID:      "admin",
			KeyringFile: keyring,
		},
	}
}

// cephAnswered remembers the last good answer per ceph.conf, so that a test asking twice
// in a row does not pay for the CLI twice.
var cephAnswered sync.Map // conf -> time.Time

// cephAnswers runs `ceph health` with a short timeout.
func cephAnswers(conf string) error {
	if at, ok := cephAnswered.Load(conf); ok && time.Since(at.(time.Time)) < 10*time.Second {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ceph", "-c", conf, "--connect-timeout", "10", "health").CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("ceph -c %s health: %v: %s", conf, err, strings.TrimSpace(string(out)))
	}
	cephAnswered.Store(conf, time.Now())
	return nil
}

// readCephConf reads the fsid and the v1 monitor addresses of a ceph.conf ("mon host" or
// "mon_host"); the one reader of ceph.conf in the suite.
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
		switch strings.ReplaceAll(strings.TrimSpace(k), "_", " ") {
		case "fsid":
			fsid = strings.TrimSpace(v)
		case "mon host":
			mons = v1Addrs(v)
		}
	}
	return fsid, mons
}

// v1Addrs picks the v1 addresses out of a mon host line ("[v2:IP:3300,v1:IP:6789]", or plain
// "IP:6789,..."): the CLI helpers (rbd-fuse, ceph-fuse, mount.ceph) all speak v1.
func v1Addrs(monHost string) []string {
	var v1, plain []string
	for _, a := range strings.FieldsFunc(monHost, func(r rune) bool { return r == '[' || r == ']' || r == ',' || r == ' ' }) {
		if addr, ok := strings.CutPrefix(a, "v1:"); ok {
			v1 = append(v1, addr)
		} else if !strings.HasPrefix(a, "v2:") {
			plain = append(plain, a)
		}
	}
	if len(v1) > 0 {
		return v1
	}
	return plain
}

// RBDBackend is a config entry for the local cluster's rbd pool.
func RBDBackend(t testing.TB, name string) config.Backend {
	return config.Backend{Name: name, Kind: "rbd", Section: &rbd.Config{Cluster: LocalCeph(t), Pool: "rbd", Mounter: "auto"}}
}

// CephFSBackend is a config entry for the local cluster's cephfs filesystem.
func CephFSBackend(t testing.TB, name string) config.Backend {
	return config.Backend{Name: name, Kind: "cephfs", Section: &cephfs.Config{Cluster: LocalCeph(t), FSName: "cephfs", SubvolumeGroupPrefix: "shiphold-", Mounter: "auto"}}
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
	return StartDriverWith(t, cfg, mode, nil)
}

// StartDriverOn is StartDriver for another node name and address (a second node plugin).
func StartDriverOn(t testing.TB, cfg *config.Config, mode driver.Mode, nodeName, nodeAddress string) *Driver {
	t.Helper()
	return StartDriverLabelled(t, cfg, mode, nodeName, nodeAddress, nil)
}

// StartDriverLabelled is StartDriverOn on a node with these labels (backend topology).
func StartDriverLabelled(t testing.TB, cfg *config.Config, mode driver.Mode, nodeName, nodeAddress string, nodeLabels map[string]string) *Driver {
	t.Helper()
	return StartDriverWith(t, cfg, mode, func(o *driver.Options) {
		o.NodeName, o.NodeAddress, o.NodeLabels = nodeName, nodeAddress, nodeLabels
	})
}

// StartDriverWith is StartDriver with the driver's options adjusted first.
func StartDriverWith(t testing.TB, cfg *config.Config, mode driver.Mode, adjust func(*driver.Options)) *Driver {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := registry.Open(cfg, mode != driver.ModeNode, mode != driver.ModeController)
	if err != nil {
		t.Fatal(err)
	}
	opts := driver.Options{
		Name: "shiphold.csi.io", Version: "test", NodeName: "node-1", NodeAddress: "127.0.0.1",
		Config: cfg, Controllers: b.Controllers, Stagers: b.Stagers, Kinds: registry.Kinds(),
	}
	if adjust != nil {
		adjust(&opts)
	}
	d, err := driver.Compose(mode, opts)
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
		// The socket file appears at bind, before listen: a call in between is refused
		// (CI: "connect: connection refused" on a test's first call). Wait for a connection.
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
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
