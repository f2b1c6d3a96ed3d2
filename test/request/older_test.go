package requesttest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// TestOlderVolumesStillServed: a volume whose record an older driver wrote (no shared request
// record: RBD without tenant, CephFS without "request", Isilon without SHIPHOLD_RECORD) is
// still recognised by a retry, listed, and deleted from the storage.
func TestOlderVolumesStillServed(t *testing.T) {
	sim := harness.StartOneFS(t)
	cfg := &config.Config{Backends: []config.Backend{harness.RBDBackend(t, "rbd"), harness.CephFSBackend(t, "cephfs"), sim.Backend(t, "isilon")}}
	cc := harness.StartDriver(t, cfg, driver.ModeController).Controller()
	tenant := fmt.Sprintf("old%05d", rand.Intn(100000))
	// olden rewrites the volume's record as the previous version wrote it; gone says
	// whether the volume's object is off the storage.
	type olden func(t *testing.T, v *csi.Volume)
	kinds := []struct {
		backend string
		olden   olden
		gone    func(t *testing.T, v *csi.Volume) bool
	}{
		{"rbd", func(t *testing.T, v *csi.Volume) {
			c := v.VolumeContext
			old := `{"name":"pvc-old-rbd","backend":"rbd","requiredBytes":33554432,"params":{"backend":"rbd"}}`
			cli(t, "rbd", "image-meta", "set", c[rbd.CtxPool]+"/"+c[rbd.CtxNamespace]+"/"+c[rbd.CtxImage], "shiphold.volume", old)
			if got := cli(t, "rbd", "image-meta", "get", c[rbd.CtxPool]+"/"+c[rbd.CtxNamespace]+"/"+c[rbd.CtxImage], "shiphold.volume"); strings.TrimSpace(got) != old {
				t.Fatalf("image record is %s, want the older %s", got, old)
			}
		}, func(t *testing.T, v *csi.Volume) bool {
			c := v.VolumeContext
			return !strings.Contains(cli(t, "rbd", "ls", c[rbd.CtxPool]+"/"+c[rbd.CtxNamespace]), c[rbd.CtxImage])
		}},
		{"cephfs", func(t *testing.T, v *csi.Volume) {
			c := v.VolumeContext
			old := `{"name":"pvc-old-cephfs","bytes":33554432,"params":{"fsName":"cephfs","mounter":"auto"}}`
			cli(t, "ceph", "fs", "subvolume", "metadata", "set", c[cephfs.CtxFSName], c[cephfs.CtxSubvolumeName], "shiphold.request", old, "--group_name", c[cephfs.CtxSubvolumeGroup])
			if got := cli(t, "ceph", "fs", "subvolume", "metadata", "get", c[cephfs.CtxFSName], c[cephfs.CtxSubvolumeName], "shiphold.request", "--group_name", c[cephfs.CtxSubvolumeGroup]); strings.TrimSpace(got) != old {
				t.Fatalf("subvolume record is %s, want the older %s", got, old)
			}
		}, func(t *testing.T, v *csi.Volume) bool {
			c := v.VolumeContext
			return !strings.Contains(cli(t, "ceph", "fs", "subvolume", "ls", c[cephfs.CtxFSName], c[cephfs.CtxSubvolumeGroup]), c[cephfs.CtxSubvolumeName])
		}},
		{"isilon", func(t *testing.T, v *csi.Volume) {
			dropAttr(t, sim, v.VolumeContext["exportPath"], "SHIPHOLD_RECORD")
		}, func(t *testing.T, v *csi.Volume) bool {
			_, err := os.Stat(filepath.Join(sim.Root, strings.TrimPrefix(v.VolumeContext["exportPath"], "/ifs")))
			return os.IsNotExist(err)
		}},
	}
	for _, k := range kinds {
		t.Run(k.backend, func(t *testing.T) {
			ctx := ctxT(t)
			req := &csi.CreateVolumeRequest{
				Name:               "pvc-old-" + k.backend,
				Parameters:         map[string]string{backend.ParamBackend: k.backend, backend.ParamPVCNamespace: tenant},
				VolumeCapabilities: []*csi.VolumeCapability{mountCap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 * mib},
			}
			resp, err := cc.CreateVolume(ctx, req)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			v := resp.Volume
			t.Cleanup(func() { cc.DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}) })
			k.olden(t, v)

			again, err := cc.CreateVolume(ctx, req)
			if err != nil || again.Volume.VolumeId != v.VolumeId || again.Volume.CapacityBytes != 32*mib {
				t.Fatalf("retry on the older record: %v, %v; want %s of %d bytes", again.GetVolume(), err, v.VolumeId, 32*mib)
			}
			bigger := proto.Clone(req).(*csi.CreateVolumeRequest)
			bigger.CapacityRange = &csi.CapacityRange{RequiredBytes: 64 * mib}
			if _, err := cc.CreateVolume(ctx, bigger); status.Code(err) != codes.AlreadyExists {
				t.Fatalf("larger size on the older record: %v, want AlreadyExists", err)
			}
			list, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{})
			if err != nil || !listed(list, v.VolumeId) {
				t.Fatalf("ListVolumes misses the older volume %s: %v", v.VolumeId, err)
			}
			if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if !k.gone(t, v) {
				t.Fatalf("older volume %s still on the storage after its delete", v.VolumeId)
			}
		})
	}
}

func listed(l *csi.ListVolumesResponse, id string) bool {
	for _, e := range l.Entries {
		if e.Volume.VolumeId == id {
			return true
		}
	}
	return false
}

// cli runs a Ceph CLI against the local cluster and returns its output.
func cli(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, append([]string{"-c", harness.CephConf()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dropAttr removes a user attribute of a directory through the simulator's Platform API.
func dropAttr(t *testing.T, sim *harness.OneFS, dir, name string) {
	t.Helper()
	body := fmt.Sprintf(`{"action":"update","attrs":[{"name":%q,"op":"delete","namespace":"user"}]}`, name)
	r, err := http.NewRequest(http.MethodPut, sim.URL+"/namespace"+dir+"?metadata", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	r.SetBasicAuth("admin", "onefs-test-password")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drop attribute %s of %s: HTTP %d", name, dir, resp.StatusCode)
	}
	if r, err = http.NewRequest(http.MethodGet, sim.URL+"/namespace"+dir+"?metadata", nil); err != nil {
		t.Fatal(err)
	}
	r.SetBasicAuth("admin", "onefs-test-password")
	if resp, err = client.Do(r); err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	attrs, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(attrs), "SHIPHOLD_REQUEST") || strings.Contains(string(attrs), name) {
		t.Fatalf("attributes of %s after dropping %s: HTTP %d %s", dir, name, resp.StatusCode, attrs)
	}
}
