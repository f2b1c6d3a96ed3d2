package cephfstest

import (
	"testing"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

func TestCephFSRealCreateIdempotentDelete(t *testing.T) {
	e := needCeph(t)
	ctx := ctxT(t)
	req := &backend.VolumeRequest{Name: "pvc-real-create", Tenant: "team-a", RequiredBytes: 64 << 20,
		Parameters: map[string]string{cephfs.ParamFuseMountOptions: "client_cache_size=1000"}}
	v1, err := e.ctrl.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ctrl.DeleteVolume(ctxT(t), v1.ID, nil) })
	v2, err := e.ctrl.CreateVolume(ctx, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if v1.ID != v2.ID || v1.Context[cephfs.CtxRootPath] != v2.Context[cephfs.CtxRootPath] || v2.CapacityBytes != 64<<20 {
		t.Fatalf("retry gave %+v, first %+v", v2, v1)
	}
	bigger := *req
	bigger.RequiredBytes = 128 << 20
	if _, err := e.ctrl.CreateVolume(ctx, &bigger); !isCode(err, backend.AlreadyExists) {
		t.Fatalf("same name, other size: %v, want AlreadyExists", err)
	}
	other := *req
	other.Parameters = map[string]string{cephfs.ParamMounter: "fuse"}
	if _, err := e.ctrl.CreateVolume(ctx, &other); !isCode(err, backend.AlreadyExists) {
		t.Fatalf("same name, other parameters: %v, want AlreadyExists", err)
	}
	if _, err := e.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "x", Tenant: "team-a", RequiredBytes: 1 << 20,
		Parameters: map[string]string{cephfs.ParamFSName: "nosuchfs"}}); !isCode(err, backend.InvalidArgument) {
		t.Fatalf("unknown fsName: %v, want InvalidArgument", err)
	}

	// The subvolume is in the tenant's group.
	cred, err := ceph.CredentialsFor(e.cfg.Section.(*cephfs.Config).Credentials, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := e.conns.Conn(ctx, e.cfg.Name, e.cfg.Section.(*cephfs.Config).Cluster, cred)
	if err != nil {
		t.Fatal(err)
	}
	fsa := admin.NewFromConn(conn)
	group := e.cfg.Section.(*cephfs.Config).SubvolumeGroupPrefix + "team-a"
	subs, err := fsa.ListSubVolumes(fsName, group)
	if err != nil || len(subs) != 1 || subs[0] != "csi-vol-"+volid.Hash(req.Name) {
		t.Fatalf("subvolumes of group %s: %v %v", group, subs, err)
	}
	if v1.Context[cephfs.CtxSubvolumeGroup] != group {
		t.Fatalf("context group %q, want %q", v1.Context[cephfs.CtxSubvolumeGroup], group)
	}
	t.Cleanup(func() { fsa.RemoveSubVolumeGroup(fsName, group) })

	got, err := e.ctrl.GetVolume(ctx, v1.ID, nil)
	if err != nil || got.RequestName != req.Name || got.CapacityBytes != 64<<20 || got.Context[cephfs.CtxFuseMountOptions] != "client_cache_size=1000" {
		t.Fatalf("GetVolume: %+v %v", got, err)
	}
	list, err := e.ctrl.ListVolumes(ctx, "team-a")
	if err != nil || len(list) != 1 || list[0].ID != v1.ID {
		t.Fatalf("ListVolumes: %+v %v", list, err)
	}
	size, node, err := e.ctrl.ExpandVolume(ctx, v1.ID, 96<<20, 0, nil)
	if err != nil || size != 96<<20 || node {
		t.Fatalf("ExpandVolume: %d %v %v (the resize result workaround must re-read the quota)", size, node, err)
	}
	if c, err := e.ctrl.Capacity(ctx, nil); err != nil || c <= 0 {
		t.Fatalf("Capacity: %d %v", c, err)
	}
	for i := 0; i < 2; i++ {
		if err := e.ctrl.DeleteVolume(ctx, v1.ID, nil); err != nil {
			t.Fatalf("DeleteVolume #%d: %v", i+1, err)
		}
	}
	if _, err := e.ctrl.GetVolume(ctx, v1.ID, nil); !backend.IsNotFound(err) {
		t.Fatalf("GetVolume after delete: %v, want NotFound", err)
	}
}
