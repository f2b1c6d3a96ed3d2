package driver

import (
	"context"
	"fmt"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
)

// kindFixture serves one backend of kind, named "b-<kind>", on a fake.
type kindFixture struct {
	d       *Driver
	ctrl    *fakeController
	backend string
}

func newKindFixture(t *testing.T, kind string) *kindFixture {
	t.Helper()
	name := "b-" + kind
	fake := newFake(name, kind)
	d, err := Compose(ModeAll, Options{Kinds: registry.Kinds(),
		Name: "shiphold.csi.io", Version: "test", NodeName: "node1", NodeAddress: "10.0.0.5",
		Config:      &config.Config{Backends: []config.Backend{{Name: name, Kind: kind}}},
		Controllers: map[string]backend.Controller{name: fake},
		Stagers:     map[string]backend.Stager{name: &fakeStager{staged: map[string]string{}}},
		Mounter:     mount.NewFakeMounter(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &kindFixture{d: d, ctrl: fake, backend: name}
}

func fsCap(fsType string, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	c := mountCap(mode)
	c.GetMount().FsType = fsType
	return c
}

var allModes = []csi.VolumeCapability_AccessMode_Mode{
	csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
	csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
	csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
	csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER,
}

const (
	rbdMultiWriter = "rbd filesystem volumes are single-node; multi-node writers need the block access type or a cephfs/isilon backend"
	rbdZFS         = `fsType "zfs" is not supported on rbd; use ext4 or xfs`
	cephfsBlock    = "cephfs volumes are shared filesystems; the block access type needs an rbd backend"
	isilonBlock    = "isilon volumes are shared filesystems; the block access type needs an rbd backend"
)

// refusal is what each kind says of a capability: "" when it serves it.
func refusal(kind string, c *csi.VolumeCapability) string {
	mode := c.GetAccessMode().GetMode()
	multiWriter := mode == csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER || mode == csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	switch {
	case kind == backend.KindRBD && c.GetMount() != nil && multiWriter:
		return rbdMultiWriter
	case kind == backend.KindRBD && c.GetMount().GetFsType() == "zfs":
		return rbdZFS
	case kind == backend.KindCephFS && c.GetBlock() != nil:
		return cephfsBlock
	case kind == backend.KindIsilon && c.GetBlock() != nil:
		return isilonBlock
	}
	return ""
}

// TestAccessByKind pins which access types, modes and fsTypes each backend kind serves, and
// the code and message of every refusal, on each call that checks a capability.
func TestAccessByKind(t *testing.T) {
	for _, kind := range []string{backend.KindRBD, backend.KindCephFS, backend.KindIsilon} {
		f := newKindFixture(t, kind)
		for _, mode := range allModes {
			for _, c := range []*csi.VolumeCapability{blockCap(mode), fsCap("", mode), fsCap("ext4", mode), fsCap("xfs", mode), fsCap("zfs", mode)} {
				name := fmt.Sprintf("%s/%s/%s", kind, accessName(c.GetBlock() != nil), c)
				t.Run(name, func(t *testing.T) { f.checkAccess(t, c, refusal(kind, c)) })
			}
		}
	}
}

func (f *kindFixture) checkAccess(t *testing.T, c *csi.VolumeCapability, want string) {
	ctx := context.Background()
	caps := []*csi.VolumeCapability{c}
	_, err := f.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: caps, Parameters: map[string]string{"backend": f.backend}})
	wantRefusal(t, "CreateVolume", err, fmt.Sprintf("backend %q: ", f.backend), want)
	id := f.existing(t)
	_, err = f.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node1@10.0.0.5", VolumeCapability: c})
	wantRefusal(t, "ControllerPublishVolume", err, "volume "+id+": ", want)
	_, err = f.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}, VolumeCapability: c})
	wantRefusal(t, "ControllerExpandVolume", err, "volume "+id+": ", want)
	_, err = f.d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: t.TempDir(), VolumeCapability: c})
	wantRefusal(t, "NodeStageVolume", err, "volume "+id+": ", want)
	v, err := f.d.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: caps})
	if err != nil {
		t.Fatalf("ValidateVolumeCapabilities: %v", err)
	}
	if v.GetMessage() != want || (v.GetConfirmed() == nil) != (want != "") {
		t.Fatalf("ValidateVolumeCapabilities: confirmed %v, message %q; want message %q", v.GetConfirmed(), v.GetMessage(), want)
	}
}

// existing is the ID of a volume the kind serves (single-node filesystem), made once.
func (f *kindFixture) existing(t *testing.T) string {
	t.Helper()
	r, err := f.d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "existing", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)},
		Parameters: map[string]string{"backend": f.backend}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetVolume().GetVolumeId()
}

func wantRefusal(t *testing.T, call string, err error, prefix, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("%s: %v, want success", call, err)
		}
		return
	}
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != prefix+want {
		t.Fatalf("%s: %v, want InvalidArgument %q", call, err, prefix+want)
	}
}

// TestNodeExpandWithoutStagingPathByKind pins what NodeExpandVolume does without a staging
// path: a filesystem kind has nothing to grow on the node and reports the size; a block
// kind needs the staging path to grow the staged device.
func TestNodeExpandWithoutStagingPathByKind(t *testing.T) {
	for _, kind := range []string{backend.KindRBD, backend.KindCephFS, backend.KindIsilon} {
		t.Run(kind, func(t *testing.T) {
			f := newKindFixture(t, kind)
			id := f.existing(t)
			resp, err := f.d.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: t.TempDir(),
				CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 40}})
			if kind == backend.KindRBD {
				if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "staging target path is required to expand a staged volume" {
					t.Fatalf("rbd: %v %v, want InvalidArgument for the missing staging path", resp, err)
				}
				return
			}
			if err != nil || resp.GetCapacityBytes() != 1<<40 {
				t.Fatalf("%s: %v %v, want the required 1 TiB reported", kind, resp, err)
			}
		})
	}
}

// TestNewRefusesKindsItDoesNotServe: a configured backend of a kind no package declared
// stops the plugin at start, naming it.
func TestNewRefusesKindsItDoesNotServe(t *testing.T) {
	opts := modeOptions(ModeController)
	opts.Config.Backends[0].Kind = "lustre"
	if _, err := Compose(ModeController, opts); err == nil || err.Error() != `backend "ceph-rbd": the driver serves no kind "lustre"` {
		t.Fatalf("New: %v", err)
	}
}

// TestArticle: refusals name the kinds that serve instead with the article said before them.
func TestArticle(t *testing.T) {
	for name, want := range map[string]string{"rbd": "an", "cephfs": "a", "isilon": "an", "lustre": "a", "sfs": "an"} {
		if got := article(name); got != want {
			t.Errorf("article(%q) = %q, want %q", name, got, want)
		}
	}
}
