package sanity

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/test/harness"
)

// secondNode is a node-mode plugin as node-2, set by TestSanity for the -mnmw runs.
var secondNode *harness.Driver

// csi-sanity runs on one node; a multi-node mode is only shown by a second node. In the
// -mnmw runs, one volume is published to this node and to node-2 (a second node plugin on
// this machine with its own staging), staged and published on both, and data written
// through either node is read through the other.
var _ = strings.HasSuffix(target, "-mnmw") && sanity.DescribeSanity("shiphold: MULTI_NODE_MULTI_WRITER on two nodes", func(sc *sanity.TestContext) {
	ctx := context.Background()
	It("writes through each node are read through the other", func() {
		r := &sanity.Resources{Context: sc, ControllerClient: csi.NewControllerClient(sc.ControllerConn), NodeClient: csi.NewNodeClient(sc.Conn)}
		// Cleanups run last in, first out: the volume is deleted after every node let go.
		DeferCleanup(r.Cleanup)
		capability := sanity.TestVolumeCapabilityWithAccessType(sc, csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
		req := sanity.MakeCreateVolumeReq(sc, sanity.UniqueString("shiphold-two-nodes"))
		req.VolumeCapabilities = []*csi.VolumeCapability{capability}
		vol := r.MustCreateVolume(ctx, req).GetVolume()
		nodes := []csi.NodeClient{r.NodeClient, secondNode.Node()}
		targets := make([]string, len(nodes))
		for i, n := range nodes {
			info, err := n.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
			Expect(err).NotTo(HaveOccurred())
			pub, err := r.ControllerClient.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: vol.GetVolumeId(), NodeId: info.GetNodeId(), VolumeCapability: capability, VolumeContext: vol.GetVolumeContext()})
			Expect(err).NotTo(HaveOccurred(), "publish to %s", info.GetNodeId())
			DeferCleanup(func() {
				_, err := r.ControllerClient.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), NodeId: info.GetNodeId()})
				Expect(err).NotTo(HaveOccurred())
			})
			targets[i] = stageAndPublish(n, vol, capability, pub.GetPublishContext(), GinkgoT().TempDir())
		}
		if capability.GetBlock() != nil {
			crossBlock(targets[0], targets[1])
			crossBlock(targets[1], targets[0])
			return
		}
		crossFile(targets[0], targets[1], "from-node-1")
		crossFile(targets[1], targets[0], "from-node-2")
	})
})

// stageAndPublish stages and publishes vol on one node below dir, and undoes it at cleanup.
func stageAndPublish(n csi.NodeClient, vol *csi.Volume, capability *csi.VolumeCapability, publishContext map[string]string, dir string) string {
	GinkgoHelper()
	ctx := context.Background()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	Expect(os.Mkdir(staging, 0o750)).To(Succeed())
	_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol.GetVolumeId(), StagingTargetPath: staging,
		VolumeCapability: capability, PublishContext: publishContext, VolumeContext: vol.GetVolumeContext()})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vol.GetVolumeId(), StagingTargetPath: staging})
		Expect(err).NotTo(HaveOccurred())
	})
	_, err = n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vol.GetVolumeId(), StagingTargetPath: staging, TargetPath: target,
		VolumeCapability: capability, PublishContext: publishContext, VolumeContext: vol.GetVolumeContext()})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), TargetPath: target})
		Expect(err).NotTo(HaveOccurred())
	})
	return target
}

// crossFile writes a file through one node's mount and reads it through the other's.
func crossFile(from, to, name string) {
	GinkgoHelper()
	data := []byte("written on " + name + " at " + sanity.UniqueString("x"))
	f, err := os.Create(filepath.Join(from, name))
	Expect(err).NotTo(HaveOccurred())
	_, err = f.Write(data)
	Expect(err).NotTo(HaveOccurred())
	Expect(f.Sync()).To(Succeed())
	Expect(f.Close()).To(Succeed())
	Eventually(func() ([]byte, error) { return os.ReadFile(filepath.Join(to, name)) }).Should(Equal(data))
}

// crossBlock writes a block in the middle of the device (away from what udev probes and
// caches at the ends) through one node and reads it through the other, below the page
// cache.
func crossBlock(from, to string) {
	GinkgoHelper()
	w, err := os.OpenFile(from, os.O_RDWR, 0)
	Expect(err).NotTo(HaveOccurred())
	defer w.Close()
	size, err := w.Seek(0, 2)
	Expect(err).NotTo(HaveOccurred())
	off := size / 2 &^ 4095
	data := bytes.Repeat([]byte(randomHash()[:4]), 1024)
	_, err = w.WriteAt(data, off)
	Expect(err).NotTo(HaveOccurred())
	Expect(w.Sync()).To(Succeed())
	rd, err := os.Open(to)
	Expect(err).NotTo(HaveOccurred())
	defer rd.Close()
	got := make([]byte, len(data))
	Eventually(func() ([]byte, error) {
		// Drop the reader's block-device cache, as a second host would not have it.
		if err := unix.IoctlSetInt(int(rd.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return nil, err
		}
		_, err := rd.ReadAt(got, off)
		return got, err
	}).Should(Equal(data))
}
