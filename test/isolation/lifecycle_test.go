package isolation

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/ceph/go-ceph/rados"
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/harness"
)

func cephBackends(t *testing.T) []config.Backend {
	return []config.Backend{harness.RBDBackend(t, "rbd"), harness.CephFSBackend(t, "fs")}
}

// A volume made before tenant identities has none on the cluster: its next publish makes
// it, and the node stages the volume with it.
func TestVolumeBeforeIdentitiesGetsOneAtPublish(t *testing.T) {
	for _, be := range cephBackends(t) {
		t.Run(be.Kind, func(t *testing.T) {
			p := startPlugins(t, be)
			tenant := newTenant("old")
			resp, err := p.ctrl.Controller().CreateVolume(ctxT(t), &csi.CreateVolumeRequest{Name: "pvc-old-" + tenant,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}, VolumeCapabilities: []*csi.VolumeCapability{mountRWO},
				Parameters: map[string]string{"backend": be.Name, "csi.storage.k8s.io/pvc/namespace": tenant}})
			if err != nil {
				t.Fatal(err)
			}
			v := &tenantVolume{tenant: tenant, vol: resp.Volume}
			t.Cleanup(func() {
				p.ctrl.Controller().DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.vol.VolumeId})
			})
			user := "shiphold." + be.Name + "." + tenant
			if out, err := exec.Command("ceph", "-c", harness.CephConf(), "auth", "rm", "client."+user).CombinedOutput(); err != nil {
				t.Fatalf("remove the identity, as before tenant identities: %v %s", err, out)
			}
			identityGone(t, user)
			v.pc = p.publish(t, v)
			if v.cred().UserID != user {
				t.Fatalf("publish handed out %s, want %s made anew", v.cred(), user)
			}
			p.stage(t, v)
			writeAndRead(t, v, "after-upgrade")
		})
	}
}

// shipholdctl tenants rotate-key: the old key is refused at once, the mount staged with it
// keeps working until it is remounted, and the next publish hands out the new key.
func TestRotateKeyKeepsStagedMounts(t *testing.T) {
	for _, be := range cephBackends(t) {
		t.Run(be.Kind, func(t *testing.T) {
			p := startPlugins(t, be)
			v := p.createPublishStage(t, newTenant("rot"))
			writeAndRead(t, v, "before")
			old := v.cred()

			rotateKey(t, be, v.tenant)
			if err := connectErr(old); !permissionDenied(err) {
				t.Fatalf("connect with the rotated-away key: %v, want EACCES/EPERM", err)
			}
			writeAndRead(t, v, "staged-before-rotation")

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
			v.pc = p.publish(t, v)
			if v.cred().UserID != old.UserID || v.cred().Key == old.Key {
				t.Fatalf("publish after rotation handed out %s (same key: %v)", v.cred(), v.cred().Key == old.Key)
			}
			p.stage(t, v)
			writeAndRead(t, v, "after")
			fmt.Printf("rotate-key %s: old key refused, staged mount kept working, remount with the new key\n", be.Kind)
		})
	}
}

// rotateKey rotates the tenant's key on be as shipholdctl does, through the backend.
func rotateKey(t *testing.T, be config.Backend, tenant string) {
	t.Helper()
	b, err := registry.Open(&config.Config{Backends: []config.Backend{be}}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, ok := b.Controllers[be.Name].(interface {
		RotateTenantKey(context.Context, string) (bool, error)
	})
	if !ok {
		t.Fatalf("backend %s cannot rotate tenant keys", be.Name)
	}
	if rotated, err := r.RotateTenantKey(ctxT(t), tenant); err != nil || !rotated {
		t.Fatalf("rotate: %v, %v", rotated, err)
	}
}

// connectErr is the error of a connect as cred.
func connectErr(cred ceph.Credentials) error {
	conn, err := rados.NewConnWithUser(cred.UserID)
	if err != nil {
		return err
	}
	defer conn.Shutdown()
	if err := conn.ReadConfigFile(harness.CephConf()); err != nil {
		return err
	}
	if err := conn.SetConfigOption("key", cred.Key); err != nil {
		return err
	}
	conn.SetConfigOption("client_mount_timeout", "10")
	return conn.Connect()
}

// A CephFS subvolume made before tenant identities keeps its files in the pool's default
// namespace (its directory's own layout says so), which the tenant's identity cannot read:
// its publish hands out no identity, and the node stages it with the node-stage secret its
// PV names, as before.
func TestCephFSVolumeBeforeIdentitiesKeepsItsSecret(t *testing.T) {
	harness.RequireCommand(t, "ceph-fuse", "apt-get install ceph-fuse, or hack/install-deps.sh")
	p := startPlugins(t, harness.CephFSBackend(t, "fs"))
	tenant := newTenant("legacy")
	resp, err := p.ctrl.Controller().CreateVolume(ctxT(t), &csi.CreateVolumeRequest{Name: "pvc-legacy-" + tenant,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}, VolumeCapabilities: []*csi.VolumeCapability{mountRWO},
		Parameters: map[string]string{"backend": "fs", "csi.storage.k8s.io/pvc/namespace": tenant}})
	if err != nil {
		t.Fatal(err)
	}
	v := &tenantVolume{tenant: tenant, vol: resp.Volume}
	t.Cleanup(func() {
		p.ctrl.Controller().DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.vol.VolumeId})
	})
	// As an older shiphold made it: the subvolume's directory lays files out in the
	// default namespace.
	setLayoutNamespace(t, subvolumePath(t, v), "")

	v.pc = p.publish(t, v)
	if _, ok := v.pc[ceph.PublishContextKey]; ok {
		t.Fatalf("a subvolume whose files are outside the tenant namespace was published with the tenant identity %s", v.cred())
	}
	admin := adminCred(t)
	dir := t.TempDir()
	v.staging, v.target = dir+"/staging", dir+"/target"
	ctx := ctxT(t)
	if _, err := p.node.Node().NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.vol.VolumeId, StagingTargetPath: v.staging,
		VolumeCapability: mountRWO, VolumeContext: v.vol.VolumeContext, PublishContext: v.pc,
		Secrets: map[string]string{ceph.SecretUserID: admin.UserID, ceph.SecretUserKey: admin.Key}}); err != nil {
		t.Fatalf("stage with the PV's node-stage secret: %v", err)
	}
	t.Cleanup(func() {
		p.node.Node().NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: v.vol.VolumeId, StagingTargetPath: v.staging})
	})
	if _, err := p.node.Node().NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.vol.VolumeId, StagingTargetPath: v.staging,
		TargetPath: v.target, VolumeCapability: mountRWO, VolumeContext: v.vol.VolumeContext, PublishContext: v.pc}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.node.Node().NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: v.vol.VolumeId, TargetPath: v.target})
	})
	writeAndRead(t, v, "legacy-data")
}

// setLayoutNamespace sets a directory's ceph.dir.layout.pool_namespace through an admin
// ceph-fuse mount of the filesystem's root.
func setLayoutNamespace(t *testing.T, path, ns string) {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("ceph-fuse", mnt, "-c", harness.CephConf(), "--id", "admin", "--client_fs=cephfs",
		"--admin_socket=", "--log_file=/dev/null").CombinedOutput(); err != nil {
		t.Fatalf("ceph-fuse as admin: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	if out, err := exec.Command("setfattr", "-n", "ceph.dir.layout.pool_namespace", "-v", ns, mnt+path).CombinedOutput(); err != nil {
		t.Fatalf("setfattr on %s: %v %s", path, err, out)
	}
}

// subvolumePath asks the mgr for the data directory of v's subvolume (its volume context
// does not name it; the publish context does).
func subvolumePath(t *testing.T, v *tenantVolume) string {
	t.Helper()
	vc := v.vol.VolumeContext
	out, err := exec.Command("ceph", "-c", harness.CephConf(), "fs", "subvolume", "getpath", vc["fsName"], vc["subvolumeName"], vc["subvolumeGroup"]).Output()
	if err != nil {
		t.Fatalf("ceph fs subvolume getpath %s %s %s: %v", vc["fsName"], vc["subvolumeName"], vc["subvolumeGroup"], err)
	}
	return strings.TrimSpace(string(out))
}

// The tenant's identity stays while any of its volumes does and goes with the last: each
// delete reads the tenant's image directory (RBD: its name_ keys a page at a time) or
// subvolume group on the real cluster, and must see the volumes left.
func TestIdentityStaysUntilTheTenantsLastVolume(t *testing.T) {
	for _, be := range cephBackends(t) {
		t.Run(be.Kind, func(t *testing.T) {
			p := startPlugins(t, be)
			tenant := newTenant("last")
			user := "shiphold." + be.Name + "." + tenant
			var ids []string
			for i := 0; i < 3; i++ {
				resp, err := p.ctrl.Controller().CreateVolume(ctxT(t), &csi.CreateVolumeRequest{Name: fmt.Sprintf("pvc-last-%s-%d", tenant, i),
					CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20}, VolumeCapabilities: []*csi.VolumeCapability{mountRWO},
					Parameters: map[string]string{"backend": be.Name, "csi.storage.k8s.io/pvc/namespace": tenant}})
				if err != nil {
					t.Fatalf("create %d: %v", i, err)
				}
				id := resp.Volume.VolumeId
				ids = append(ids, id)
				t.Cleanup(func() {
					p.ctrl.Controller().DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id})
				})
			}
			for i, id := range ids {
				if _, err := p.ctrl.Controller().DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
					t.Fatalf("delete %d: %v", i, err)
				}
				if i < len(ids)-1 {
					if caps := authCaps(t, user); !strings.Contains(caps, tenant) {
						t.Fatalf("after delete %d of %d the identity lost its grant on the tenant:\n%s", i+1, len(ids), caps)
					}
					continue
				}
				identityGone(t, user)
			}
		})
	}
}
