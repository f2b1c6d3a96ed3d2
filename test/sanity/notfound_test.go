package sanity

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// csi-sanity sends IDGen's volume IDs to a few "does not exist" specs and hard-codes its
// snapshot IDs ("none-exist-id"), which never parse. These specs send every controller call
// that names a volume or snapshot an ID that parses and then misses on the storage: in the
// tenant and location of a real volume, in a tenant the storage has never seen, and at a
// location (pool, filesystem) that does not exist; and a missing snapshot of a real volume.
// Each asserts the code the CSI spec names.
var _ = sanity.DescribeSanity("shiphold: well-formed IDs that miss on the storage", func(sc *sanity.TestContext) {
	var r *sanity.Resources
	BeforeEach(func() {
		r = &sanity.Resources{Context: sc, ControllerClient: csi.NewControllerClient(sc.ControllerConn), NodeClient: csi.NewNodeClient(sc.Conn)}
	})
	AfterEach(func() { r.Cleanup() })
	ids := func() missingIDs { return sc.Config.IDGen.(missingIDs) }

	variants := []struct {
		what string
		id   func(missingIDs) volid.Volume
	}{
		{"a missing volume in a real tenant", missingIDs.volume},
		{"a volume of a tenant the storage has never seen", missingIDs.inAbsentTenant},
		{"a volume at a location that does not exist", missingIDs.atAbsentLocation},
	}
	for _, v := range variants {
		Describe(v.what, func() {
			var id volid.Volume
			BeforeEach(func() { id = v.id(ids()) })
			volumeCalls(sc, func() *sanity.Resources { return r }, func() volid.Volume { return id })
			snapshotCalls(sc, func() *sanity.Resources { return r }, func() volid.Snapshot { return ids().snapshotOf(id) })
		})
	}
	Describe("a missing snapshot of a real volume", func() {
		var snap volid.Snapshot
		BeforeEach(func() {
			vol := r.MustCreateVolume(context.Background(), sanity.MakeCreateVolumeReq(sc, sanity.UniqueString("shiphold-snapless")))
			v, err := volid.ParseVolume(vol.GetVolume().GetVolumeId())
			Expect(err).NotTo(HaveOccurred())
			snap = ids().snapshotOf(v)
		})
		snapshotCalls(sc, func() *sanity.Resources { return r }, func() volid.Snapshot { return snap })
	})
})

// One tenant's volumes and snapshots exist, and still cannot seed another tenant's volume.
var _ = sanity.DescribeSanity("shiphold: tenants cannot take each other's data", func(sc *sanity.TestContext) {
	var r *sanity.Resources
	var vol *csi.CreateVolumeResponse
	var snap *csi.CreateSnapshotResponse
	ctx := context.Background()
	BeforeEach(func() {
		r = &sanity.Resources{Context: sc, ControllerClient: csi.NewControllerClient(sc.ControllerConn), NodeClient: csi.NewNodeClient(sc.Conn)}
		vol = r.MustCreateVolume(ctx, inTenant(sanity.MakeCreateVolumeReq(sc, sanity.UniqueString("shiphold-other-tenant")), "sanity-other"))
		snap = r.MustCreateSnapshot(ctx, sanity.MakeCreateSnapshotReq(sc, sanity.UniqueString("shiphold-other-tenant-snap"), vol.GetVolume().GetVolumeId()))
	})
	AfterEach(func() { r.Cleanup() })
	It("CreateVolume cloning another tenant's volume is INVALID_ARGUMENT", func() {
		req := sanity.MakeCreateVolumeReq(sc, sanity.UniqueString("shiphold-steal-volume"))
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vol.GetVolume().GetVolumeId()}}}
		_, err := r.CreateVolume(ctx, req)
		expectCode(err, codes.InvalidArgument)
	})
	It("CreateVolume from another tenant's snapshot is INVALID_ARGUMENT", func() {
		req := sanity.MakeCreateVolumeReq(sc, sanity.UniqueString("shiphold-steal-snapshot"))
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()}}}
		_, err := r.CreateVolume(ctx, req)
		expectCode(err, codes.InvalidArgument)
	})
})

// inTenant makes a CreateVolume for tenant, as external-provisioner does for a PVC in that
// namespace: a content source must be in the volume's own tenant.
func inTenant(req *csi.CreateVolumeRequest, tenant string) *csi.CreateVolumeRequest {
	p := map[string]string{backend.ParamPVCNamespace: tenant}
	for k, v := range req.Parameters {
		p[k] = v
	}
	req.Parameters = p
	return req
}

func expectCode(err error, want codes.Code) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "want %v", want)
	Expect(status.Code(err)).To(Equal(want), "error: %v", err)
}

// volumeCalls: every controller call on a volume ID that misses.
func volumeCalls(sc *sanity.TestContext, res func() *sanity.Resources, id func() volid.Volume) {
	ctx := context.Background()
	capability := func() *csi.VolumeCapability {
		return sanity.TestVolumeCapabilityWithAccessType(sc, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	}
	It("ControllerGetVolume is NOT_FOUND", func() {
		_, err := res().ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id().String()})
		expectCode(err, codes.NotFound)
	})
	It("ValidateVolumeCapabilities is NOT_FOUND", func() {
		_, err := res().ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
			VolumeId: id().String(), VolumeCapabilities: []*csi.VolumeCapability{capability()}})
		expectCode(err, codes.NotFound)
	})
	It("ControllerPublishVolume to this node is NOT_FOUND", func() {
		node, err := res().NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		Expect(err).NotTo(HaveOccurred())
		_, err = res().ControllerClient.ControllerPublishVolume(ctx, sanity.MakeControllerPublishVolumeReq(sc, id().String(), node.GetNodeId()))
		expectCode(err, codes.NotFound)
	})
	It("ControllerUnpublishVolume succeeds", func() {
		node, err := res().NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		Expect(err).NotTo(HaveOccurred())
		_, err = res().ControllerUnpublishVolume(ctx, sanity.MakeControllerUnpublishVolumeReq(sc, id().String(), node.GetNodeId()))
		Expect(err).NotTo(HaveOccurred())
	})
	It("ControllerExpandVolume is NOT_FOUND", func() {
		_, err := res().ControllerExpandVolume(ctx, sanity.MakeExpandVolumeReq(sc, id().String()))
		expectCode(err, codes.NotFound)
	})
	It("DeleteVolume succeeds", func() {
		_, err := res().ControllerClient.DeleteVolume(ctx, sanity.MakeDeleteVolumeReq(sc, id().String()))
		Expect(err).NotTo(HaveOccurred())
	})
	It("CreateSnapshot of it is NOT_FOUND", func() {
		_, err := res().ControllerClient.CreateSnapshot(ctx, sanity.MakeCreateSnapshotReq(sc, sanity.UniqueString("shiphold-snap-of-missing"), id().String()))
		expectCode(err, codes.NotFound)
	})
	It("CreateVolume cloning it is NOT_FOUND", func() {
		req := inTenant(sanity.MakeCreateVolumeReq(sc, sanity.UniqueString("shiphold-clone-of-missing")), id().Tenant)
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id().String()}}}
		_, err := res().CreateVolume(ctx, req)
		expectCode(err, codes.NotFound)
	})
	It("ListSnapshots of it is empty", func() {
		rsp, err := res().ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: id().String()})
		Expect(err).NotTo(HaveOccurred())
		Expect(rsp.GetEntries()).To(BeEmpty())
	})
}

// snapshotCalls: every controller call on a snapshot ID that misses.
func snapshotCalls(sc *sanity.TestContext, res func() *sanity.Resources, id func() volid.Snapshot) {
	ctx := context.Background()
	It("GetSnapshot is NOT_FOUND", func() {
		_, err := res().GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: id().String()})
		expectCode(err, codes.NotFound)
	})
	It("ListSnapshots by its ID is empty", func() {
		rsp, err := res().ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: id().String()})
		Expect(err).NotTo(HaveOccurred())
		Expect(rsp.GetEntries()).To(BeEmpty())
	})
	It("DeleteSnapshot succeeds", func() {
		_, err := res().DeleteSnapshot(ctx, sanity.MakeDeleteSnapshotReq(sc, id().String()))
		Expect(err).NotTo(HaveOccurred())
	})
	It("CreateVolume from it is NOT_FOUND", func() {
		snap := id()
		req := inTenant(sanity.MakeCreateVolumeReq(sc, sanity.UniqueString(fmt.Sprintf("shiphold-from-missing-%s", snap.SnapHash))), snap.Tenant)
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.String()}}}
		_, err := res().CreateVolume(ctx, req)
		expectCode(err, codes.NotFound)
	})
}
