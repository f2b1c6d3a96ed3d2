// Package requesttest sends the same CreateVolume situations to all three backends (RBD and
// CephFS on the local Ceph, Isilon on the OneFS simulator) through the driver, and expects
// the same gRPC answer from each: one conflict rule and one error mapping for every backend.
package requesttest

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

const mib = int64(1 << 20)

var mountCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// kinds are the three backends, each with a parameter of its own that changes the volume.
var kinds = []struct {
	backend string
	// otherParam is a StorageClass parameter the first request did not set.
	otherParam [2]string
}{
	{"rbd", [2]string{"mounter", "rbd-fuse"}},
	{"cephfs", [2]string{"mounter", "fuse"}},
	{"isilon", [2]string{"rootClientEnabled", "true"}},
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stack serves the three backends from one driver.
func stack(t *testing.T) (*harness.Driver, config.Backend) {
	isi := harness.IsilonBackend(t, "isilon")
	cfg := &config.Config{Backends: []config.Backend{harness.RBDBackend(t, "rbd"), harness.CephFSBackend(t, "cephfs"), isi}}
	return harness.StartDriver(t, cfg, driver.ModeController), isi
}

// TestRetriedCreateSameAnswer: a retried CreateVolume that the volume satisfies returns it;
// any difference (size outside the range, parameters, content source) is ALREADY_EXISTS
// naming it, on every backend; a missing content source is NOT_FOUND.
func TestRetriedCreateSameAnswer(t *testing.T) {
	d, _ := stack(t)
	cc := d.Controller()
	tenant := fmt.Sprintf("req%05d", rand.Intn(100000))
	for _, k := range kinds {
		t.Run(k.backend, func(t *testing.T) {
			ctx := ctxT(t)
			params := func(extra ...string) map[string]string {
				p := map[string]string{backend.ParamBackend: k.backend, backend.ParamPVCNamespace: tenant, backend.ParamPVCName: "claim"}
				for i := 0; i+1 < len(extra); i += 2 {
					p[extra[i]] = extra[i+1]
				}
				return p
			}
			create := func(name string, required, limit int64, p map[string]string, src *csi.VolumeContentSource) (*csi.Volume, error) {
				resp, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{
					Name: name, Parameters: p, VolumeCapabilities: []*csi.VolumeCapability{mountCap},
					CapacityRange: &csi.CapacityRange{RequiredBytes: required, LimitBytes: limit}, VolumeContentSource: src,
				})
				return resp.GetVolume(), err
			}
			name := "pvc-" + k.backend
			first, err := create(name, 64*mib, 128*mib, params(), nil)
			if err != nil {
				t.Fatalf("first create: %v", err)
			}
			t.Cleanup(func() { cc.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: first.VolumeId}) })
			other, err := create(name+"-other", 16*mib, 0, params(), nil)
			if err != nil {
				t.Fatalf("second volume: %v", err)
			}
			t.Cleanup(func() { cc.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: other.VolumeId}) })
			snap, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-" + k.backend, SourceVolumeId: other.VolumeId})
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			snapID := snap.GetSnapshot().GetSnapshotId()
			fromSnap := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}

			rows := []struct {
				name            string
				required, limit int64
				params          map[string]string
				src             *csi.VolumeContentSource
				want            codes.Code
			}{
				{"retry, same request", 64 * mib, 128 * mib, params(), nil, codes.OK},
				{"retry, other PVC name", 64 * mib, 128 * mib, params(backend.ParamPVCName, "claim-2"), nil, codes.OK},
				{"retry, smaller required the volume satisfies", 32 * mib, 128 * mib, params(), nil, codes.OK},
				{"retry, no limit", 64 * mib, 0, params(), nil, codes.OK},
				{"retry, larger required", 96 * mib, 128 * mib, params(), nil, codes.AlreadyExists},
				{"retry, limit below the volume", 16 * mib, 32 * mib, params(), nil, codes.AlreadyExists},
				{"retry, other parameters", 64 * mib, 128 * mib, params(k.otherParam[0], k.otherParam[1]), nil, codes.AlreadyExists},
				{"retry, other content source", 64 * mib, 128 * mib, params(), fromSnap, codes.AlreadyExists},
			}
			for _, r := range rows {
				vol, err := create(name, r.required, r.limit, r.params, r.src)
				if got := status.Code(err); got != r.want {
					t.Errorf("%s: got %v (%v), want %v", r.name, got, err, r.want)
					continue
				}
				if r.want == codes.OK && (vol.VolumeId != first.VolumeId || vol.CapacityBytes != 64*mib) {
					t.Errorf("%s: got volume %s of %d bytes, want the first one %s of %d", r.name, vol.VolumeId, vol.CapacityBytes, first.VolumeId, 64*mib)
				}
			}
			if _, err := cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapID}); err != nil {
				t.Fatalf("delete snapshot: %v", err)
			}
			_, err = create(name+"-restore", 64*mib, 0, params(), fromSnap)
			if status.Code(err) != codes.NotFound {
				t.Errorf("content source missing: got %v (%v), want NotFound", status.Code(err), err)
			}
		})
	}
}

// weakCephUser makes a cephx user that may read the monitors and nothing else: every pool,
// mgr and MDS call it makes is refused with EACCES/EPERM.
func weakCephUser(t *testing.T) ceph.DefaultCredentials {
	user := fmt.Sprintf("shiphold-weak-%05d", rand.Intn(100000))
	conf := harness.CephConf()
	keyring := filepath.Join(t.TempDir(), "keyring")
	out, err := exec.Command("ceph", "-c", conf, "auth", "get-or-create", "client."+user, "mon", "allow r", "-o", keyring).CombinedOutput()
	harness.Require(t, "the ceph CLI on the local Ceph", err == nil, fmt.Sprintf("ceph auth get-or-create: %v: %s", err, out))
	t.Cleanup(func() { exec.Command("ceph", "-c", conf, "auth", "rm", "client."+user).Run() })
	return ceph.DefaultCredentials{UserID: user, KeyringFile: keyring}
}

// TestStorageRefusalKeepsItsCode: the driver paths that list every backend (ListVolumes,
// ListSnapshots, the tenant quota check of CreateVolume) answer a storage refusal with its
// own code, as every other call does, not UNAVAILABLE (which tells the CO to retry a call
// that cannot succeed). Ceph refuses a user without caps (EACCES: FAILED_PRECONDITION); the
// OneFS simulator refuses a wrong password (INVALID_ARGUMENT, as for any bad credential).
func TestStorageRefusalKeepsItsCode(t *testing.T) {
	rbdBe, cephfsBe := harness.RBDBackend(t, "rbd"), harness.CephFSBackend(t, "cephfs")
	weak := weakCephUser(t)
	rbdBe.Section.(*rbd.Config).Credentials, cephfsBe.Section.(*cephfs.Config).Credentials = weak, weak
	isi := harness.IsilonBackend(t, "isilon")
	if err := os.WriteFile(isi.Section.(*isilon.Config).CredentialsFile, []byte("username: admin\npassword: wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := map[string]codes.Code{"rbd": codes.FailedPrecondition, "cephfs": codes.FailedPrecondition, "isilon": codes.InvalidArgument}
	for _, be := range []config.Backend{rbdBe, cephfsBe, isi} {
		t.Run(be.Name, func(t *testing.T) {
			cfg := &config.Config{Backends: []config.Backend{be}, Tenants: config.Tenants{Default: config.TenantQuota{MaxVolumes: 10}}}
			cc := harness.StartDriver(t, cfg, driver.ModeController).Controller()
			ctx := ctxT(t)
			_, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{})
			if got := status.Code(err); got != want[be.Name] {
				t.Errorf("ListVolumes: got %v (%v), want %v", got, err, want[be.Name])
			}
			_, err = cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
			if got := status.Code(err); got != want[be.Name] {
				t.Errorf("ListSnapshots: got %v (%v), want %v", got, err, want[be.Name])
			}
			_, err = cc.CreateVolume(ctx, &csi.CreateVolumeRequest{
				Name: "pvc-refused", Parameters: map[string]string{backend.ParamBackend: be.Name},
				VolumeCapabilities: []*csi.VolumeCapability{mountCap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 16 * mib},
			})
			if got := status.Code(err); got != want[be.Name] {
				t.Errorf("CreateVolume under a tenant quota: got %v (%v), want %v", got, err, want[be.Name])
			}
		})
	}
}
