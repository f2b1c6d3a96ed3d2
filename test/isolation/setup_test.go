// Package isolation shows on the real single-node Ceph (hack/micro-ceph.sh) that the cephx
// identities the driver makes per tenant keep tenants apart: tenant A's key is refused on
// tenant B's RBD images and CephFS subvolume, while the cluster-wide key the node plugin
// used to hold is not; and A's volume is staged, written and read through a node plugin
// that holds no key of its own. Tests skip without the cluster, or fail under
// SHIPHOLD_REQUIRE_STACK=1.
package isolation

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

const node1 = "node-1@127.0.0.1" // NodeGetInfo's ID of the node plugin below

// plugins are a controller plugin with the backend's (cluster-wide) credentials and a node
// plugin with none: whatever the node mounts, it mounts with a published tenant identity.
type plugins struct {
	be         config.Backend
	ctrl, node *harness.Driver
}

func startPlugins(t *testing.T, be config.Backend) *plugins {
	t.Helper()
	harness.RequireRoot(t, "mounting volumes on the node")
	ctrl := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	nodeBe := be
	switch s := be.Section.(type) {
	case *rbd.Config:
		r := *s
		r.Credentials = ceph.DefaultCredentials{}
		nodeBe.Section = &r
	case *cephfs.Config:
		f := *s
		f.Credentials = ceph.DefaultCredentials{}
		nodeBe.Section = &f
	}
	node := harness.StartDriverOn(t, &config.Config{Backends: []config.Backend{nodeBe}}, driver.ModeNode, "node-1", "127.0.0.1")
	return &plugins{be: be, ctrl: ctrl, node: node}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var mountRWO = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// tenantVolume is one tenant's volume, published to node-1 and staged there.
type tenantVolume struct {
	tenant  string
	vol     *csi.Volume
	pc      map[string]string // publish context: the tenant's identity
	staging string
	target  string
}

// cred is the tenant identity the controller published.
func (v *tenantVolume) cred() ceph.Credentials {
	return ceph.Credentials{UserID: v.pc[ceph.PublishContextUser], Key: v.pc[ceph.PublishContextKey]}
}

// newTenant makes a tenant name no earlier run used.
func newTenant(prefix string) string { return fmt.Sprintf("%s-%05d", prefix, rand.Intn(100000)) }

// createPublishStage creates a volume for tenant, publishes it to node-1 and stages and
// publishes it there, with the identity the publish handed out.
func (p *plugins) createPublishStage(t *testing.T, tenant string) *tenantVolume {
	t.Helper()
	ctx := ctxT(t)
	resp, err := p.ctrl.Controller().CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-iso-" + tenant,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}, VolumeCapabilities: []*csi.VolumeCapability{mountRWO},
		Parameters: map[string]string{backend.ParamBackend: p.be.Name, backend.ParamPVCNamespace: tenant}})
	if err != nil {
		t.Fatalf("create for %s: %v", tenant, err)
	}
	v := &tenantVolume{tenant: tenant, vol: resp.Volume}
	t.Cleanup(func() {
		p.ctrl.Controller().DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.vol.VolumeId})
	})
	v.pc = p.publish(t, v)
	if v.cred().UserID == "" || v.cred().Key == "" {
		t.Fatalf("ControllerPublishVolume handed out no tenant identity: %v", v.pc)
	}
	p.stage(t, v)
	return v
}

func (p *plugins) publish(t *testing.T, v *tenantVolume) map[string]string {
	t.Helper()
	pub, err := p.ctrl.Controller().ControllerPublishVolume(ctxT(t), &csi.ControllerPublishVolumeRequest{VolumeId: v.vol.VolumeId,
		NodeId: node1, VolumeCapability: mountRWO, VolumeContext: v.vol.VolumeContext})
	if err != nil {
		t.Fatalf("publish %s: %v", v.vol.VolumeId, err)
	}
	t.Cleanup(func() {
		p.ctrl.Controller().ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: v.vol.VolumeId, NodeId: node1})
	})
	return pub.PublishContext
}

// stage stages and publishes v on the node plugin with v's publish context.
func (p *plugins) stage(t *testing.T, v *tenantVolume) {
	t.Helper()
	ctx := ctxT(t)
	dir := t.TempDir()
	v.staging, v.target = filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	if _, err := p.node.Node().NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.vol.VolumeId, StagingTargetPath: v.staging,
		VolumeCapability: mountRWO, VolumeContext: v.vol.VolumeContext, PublishContext: v.pc}); err != nil {
		t.Fatalf("stage %s with %s: %v", v.vol.VolumeId, v.cred(), err)
	}
	staging := v.staging
	t.Cleanup(func() {
		p.node.Node().NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: v.vol.VolumeId, StagingTargetPath: staging})
	})
	if _, err := p.node.Node().NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.vol.VolumeId, StagingTargetPath: v.staging,
		TargetPath: v.target, VolumeCapability: mountRWO, VolumeContext: v.vol.VolumeContext, PublishContext: v.pc}); err != nil {
		t.Fatalf("node publish %s: %v", v.vol.VolumeId, err)
	}
	target := v.target
	t.Cleanup(func() {
		p.node.Node().NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: v.vol.VolumeId, TargetPath: target})
	})
}

// writeAndRead writes a file on the published volume and reads it back.
func writeAndRead(t *testing.T, v *tenantVolume, name string) {
	t.Helper()
	want := []byte("data of tenant " + v.tenant + " in " + name)
	f := filepath.Join(v.target, name)
	// Synced, so the data is in RADOS objects when this returns.
	fd, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err == nil {
		_, err = fd.Write(want)
		if serr := fd.Sync(); err == nil {
			err = serr
		}
		if cerr := fd.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("write %s: %v", f, err)
	}
	got, err := os.ReadFile(f)
	if err != nil || string(got) != string(want) {
		t.Fatalf("read back %s: %q %v", f, got, err)
	}
}

// The node plugin has no key of its own: a stage without a published identity is refused.
func (p *plugins) nodeHasNoKey(t *testing.T, v *tenantVolume) {
	t.Helper()
	// The publish context without the identity (a CephFS volume's data directory stays).
	pc := map[string]string{}
	for k, val := range v.pc {
		if k != ceph.PublishContextUser && k != ceph.PublishContextKey {
			pc[k] = val
		}
	}
	_, err := p.node.Node().NodeStageVolume(ctxT(t), &csi.NodeStageVolumeRequest{VolumeId: v.vol.VolumeId,
		StagingTargetPath: filepath.Join(t.TempDir(), "staging"), VolumeCapability: mountRWO, VolumeContext: v.vol.VolumeContext, PublishContext: pc})
	if err == nil || !strings.Contains(err.Error(), "no Ceph credentials") {
		t.Fatalf("stage without a published identity: %v; want the node to have no key of its own", err)
	}
}

// connectAs opens a rados handle as cred on the local cluster.
func connectAs(t *testing.T, cred ceph.Credentials) *rados.Conn {
	t.Helper()
	conn, err := rados.NewConnWithUser(cred.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadConfigFile(harness.CephConf()); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetConfigOption("key", cred.Key); err != nil {
		t.Fatal(err)
	}
	if err := conn.Connect(); err != nil {
		t.Fatalf("connect as %s: %v", cred, err)
	}
	t.Cleanup(conn.Shutdown)
	return conn
}

// adminCred is the cluster-wide key: what node plugins held before tenant identities.
func adminCred(t *testing.T) ceph.Credentials {
	t.Helper()
	cred, err := ceph.CredentialsFor(harness.LocalCeph(t).Credentials, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// permissionDenied reports whether err is Ceph's EACCES or EPERM, and nothing else.
func permissionDenied(err error) bool {
	n := ceph.Errno(err)
	return n == syscall.EACCES || n == syscall.EPERM
}

// probe runs one attempt as tenant A and the same attempt with the cluster-wide key: A's
// must fail with a permission error, the cluster key's must succeed (so the probe can fail).
func probe(t *testing.T, kind, name string, asTenant, asClusterKey func() error) {
	t.Helper()
	if err := asClusterKey(); err != nil {
		t.Errorf("isolation %s %s: the cluster-wide key failed too (%v): the probe proves nothing", kind, name, err)
		return
	}
	t.Logf("isolation %s %s: allowed with the cluster-wide key the node plugin used to hold", kind, name)
	err := asTenant()
	switch {
	case err == nil:
		t.Errorf("isolation %s %s: ALLOWED with the other tenant's key", kind, name)
	case !permissionDenied(err):
		t.Errorf("isolation %s %s: failed, but not with EACCES/EPERM: %v", kind, name, err)
	default:
		t.Logf("isolation %s %s: the tenant key got errno %d (%v)", kind, name, ceph.Errno(err), err)
		fmt.Printf("isolation %s %s: denied\n", kind, name)
	}
}

// identityGone fails unless the cluster has no user for cred any more.
func identityGone(t *testing.T, user string) {
	t.Helper()
	out, err := exec.Command("ceph", "-c", harness.CephConf(), "auth", "get", "client."+user).CombinedOutput()
	if err == nil {
		t.Errorf("client.%s still exists after its tenant's last volume was deleted:\n%s", user, out)
	} else if !strings.Contains(string(out), "ENOENT") && !strings.Contains(string(out), "failed to find") {
		t.Errorf("ceph auth get client.%s: %v %s", user, err, out)
	}
}

// authCaps reads a user's caps with the cluster-wide key, as its keyring text.
func authCaps(t *testing.T, user string) string {
	t.Helper()
	return string(authGet(t, user))
}

// monCaps reads a user's caps and key with the cluster-wide key.
func monCaps(t *testing.T, user string) (map[string]string, string) {
	t.Helper()
	out := authGet(t, user, "-f", "json")
	var entries []struct {
		Key  string            `json:"key"`
		Caps map[string]string `json:"caps"`
	}
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) != 1 {
		t.Fatalf("ceph auth get client.%s: %v %s", user, err, out)
	}
	return entries[0].Caps, entries[0].Key
}

// authGet is what `ceph auth get client.<user> <args>` prints, with the cluster-wide key.
func authGet(t *testing.T, user string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("ceph", append([]string{"-c", harness.CephConf(), "auth", "get", "client." + user}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ceph auth get client.%s: %v %s%s", user, err, out, stderr.String())
	}
	return out
}

// cliFailure is a failed Ceph CLI with the errno it printed ("(13) Permission denied").
type cliFailure struct {
	errno syscall.Errno
	out   string
}

func (e cliFailure) Error() string  { return strings.TrimSpace(e.out) }
func (e cliFailure) ErrorCode() int { return -int(e.errno) }

var cliErrno = regexp.MustCompile(`\((\d+)\) [A-Z][a-z]`)

// cliError turns a failed CLI run into an error whose errno is the one the CLI printed (0
// when it printed none).
func cliError(err error, out []byte) error {
	var n int
	if m := cliErrno.FindSubmatch(out); m != nil {
		n, _ = strconv.Atoi(string(m[1]))
	}
	return cliFailure{errno: syscall.Errno(n), out: fmt.Sprintf("%v: %s", err, out)}
}
