package isolation

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/test/harness"
)

const rbdPool = "rbd"

// Tenant A's RBD identity reaches A's namespace only: it cannot list, open, read or write
// in B's; the cluster-wide key can. A's volume is staged, written and read by a node
// plugin that holds no key, and the identities go with their tenants' last volumes.
func TestRBDTenantIsolation(t *testing.T) {
	harness.RequireCommand(t, "rbd-fuse", "apt-get install rbd-fuse, or hack/install-deps.sh")
	p := startPlugins(t, harness.RBDBackend(t, "rbd"))
	a := p.createPublishStage(t, newTenant("isoa"))
	b := p.createPublishStage(t, newTenant("isob"))
	writeAndRead(t, b, "b-data") // B's image now has data objects
	if a.cred().UserID != "shiphold.rbd."+a.tenant || a.cred() == b.cred() {
		t.Fatalf("identities %s and %s: want one per tenant", a.cred(), b.cred())
	}
	caps := authCaps(t, a.cred().UserID)
	for _, want := range []string{`caps mon = "profile rbd"`, `caps osd = "profile rbd pool=rbd namespace=` + a.tenant + `"`} {
		if !strings.Contains(caps, want) {
			t.Errorf("client.%s lacks %s:\n%s", a.cred().UserID, want, caps)
		}
	}

	asA, asCluster := connectAs(t, a.cred()), connectAs(t, adminCred(t))
	image := b.vol.VolumeContext["imageName"]
	inB := func(conn *rados.Conn, fn func(io *rados.IOContext) error) error {
		io, err := conn.OpenIOContext(rbdPool)
		if err != nil {
			return err
		}
		defer io.Destroy()
		io.SetNamespace(b.tenant)
		return fn(io)
	}
	dataObject := firstObject(t, asCluster, rbdPool, b.tenant, "rbd_data.")

	list := func(conn *rados.Conn) func() error {
		return func() error {
			return inB(conn, func(io *rados.IOContext) error {
				names, err := librbd.GetImageNames(io)
				if err == nil && !slices.Contains(names, image) {
					t.Errorf("rbd ls --namespace %s: %v lacks %s", b.tenant, names, image)
				}
				return err
			})
		}
	}
	open := func(conn *rados.Conn) func() error {
		return func() error {
			return inB(conn, func(io *rados.IOContext) error {
				img, err := librbd.OpenImageReadOnly(io, image, librbd.NoSnapshot)
				if err == nil {
					img.Close()
				}
				return err
			})
		}
	}
	get := func(conn *rados.Conn) func() error {
		return func() error {
			return inB(conn, func(io *rados.IOContext) error {
				_, err := io.Read(dataObject, make([]byte, 4096), 0)
				return err
			})
		}
	}
	put := func(conn *rados.Conn) func() error {
		return func() error {
			return inB(conn, func(io *rados.IOContext) error {
				if err := io.WriteFull("shiphold-isolation-probe", []byte("x")); err != nil {
					return err
				}
				return io.Delete("shiphold-isolation-probe")
			})
		}
	}
	probe(t, "rbd", "list-images", list(asA), list(asCluster))
	probe(t, "rbd", "open-image", open(asA), open(asCluster))
	probe(t, "rbd", "rados-get", get(asA), get(asCluster))
	probe(t, "rbd", "rados-put", put(asA), put(asCluster))
	// The rbd CLI says the same as librbd.
	cli := func(cred ceph.Credentials) func() error {
		return func() error { return rbdCLI(t, cred, "ls", "--pool", rbdPool, "--namespace", b.tenant) }
	}
	probe(t, "rbd", "rbd-ls-cli", cli(a.cred()), cli(adminCred(t)))

	writeAndRead(t, a, "a-data")
	p.nodeHasNoKey(t, a)
	if !t.Failed() {
		fmt.Println("isolation rbd own-volume: ok")
	}

	// The identity goes with the tenant's last volume.
	unstageAndDelete(t, p, a)
	identityGone(t, a.cred().UserID)
}

// firstObject lists the tenant's namespace of the pool with the cluster-wide key.
func firstObject(t *testing.T, conn *rados.Conn, pool, ns, prefix string) string {
	t.Helper()
	io, err := conn.OpenIOContext(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	io.SetNamespace(ns)
	found := ""
	err = io.ListObjects(func(oid string) {
		if found == "" && strings.HasPrefix(oid, prefix) {
			found = oid
		}
	})
	if err != nil || found == "" {
		t.Fatalf("no %s* object in %s/%s: %v", prefix, pool, ns, err)
	}
	return found
}

// rbdCLI runs the rbd CLI as cred; its failure carries the errno the CLI exits with.
func rbdCLI(t *testing.T, cred ceph.Credentials, args ...string) error {
	t.Helper()
	keyFile, cleanup, err := ceph.WriteKeyFile(t.TempDir(), cred)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	cmd := exec.Command("rbd", append([]string{"-c", harness.CephConf(), "--id", cred.UserID, "--keyfile", keyFile}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return cliError(err, out)
	}
	return nil
}

// unstageAndDelete takes the volume off the node and deletes it, as its last use ends.
func unstageAndDelete(t *testing.T, p *plugins, v *tenantVolume) {
	t.Helper()
	ctx := context.Background()
	if _, err := p.node.Node().NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.vol.VolumeId, TargetPath: v.target}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.Node().NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.vol.VolumeId, StagingTargetPath: v.staging}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ctrl.Controller().ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.vol.VolumeId, NodeId: node1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ctrl.Controller().DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.vol.VolumeId}); err != nil {
		t.Fatal(err)
	}
}

// TestRBDStageWithAnotherTenantsKeyFailsPromptly: a node handed a key that may not read the
// image (another tenant's identity, or a published identity the image lies outside of)
// must fail the stage within its bounds, with a message naming the user, and leave nothing
// mounted. rbd-fuse with such a key never answers the image's lookup: the stage hung for
// good (seen with an adopted image outside the tenant's namespace).
func TestRBDStageWithAnotherTenantsKeyFailsPromptly(t *testing.T) {
	harness.RequireCommand(t, "rbd-fuse", "apt-get install rbd-fuse, or hack/install-deps.sh")
	p := startPlugins(t, harness.RBDBackend(t, "rbd"))
	a := p.createPublishStage(t, newTenant("isoa"))
	b := p.createPublishStage(t, newTenant("isob"))
	staging := filepath.Join(t.TempDir(), "staging")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	_, err := p.node.Node().NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: b.vol.VolumeId, StagingTargetPath: staging,
		VolumeCapability: mountRWO, VolumeContext: b.vol.VolumeContext, PublishContext: a.pc})
	took := time.Since(start).Round(time.Second)
	if err == nil {
		t.Fatalf("tenant %s's volume staged with tenant %s's identity", b.tenant, a.tenant)
	}
	if status.Code(err) == codes.DeadlineExceeded || ctx.Err() != nil {
		t.Fatalf("the stage with another tenant's key hung (%s): %v", took, err)
	}
	if !strings.Contains(err.Error(), a.cred().UserID) {
		t.Errorf("the error does not name the user whose key was refused: %v", err)
	}
	out, _ := exec.Command("findmnt", "-rn", "-R", staging).CombinedOutput()
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("left mounted after the failed stage:\n%s", out)
	}
	fmt.Printf("isolation rbd stage-with-other-key: refused in %s\n", took)
}
