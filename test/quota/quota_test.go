// Package quotatest checks tenant quotas through the CSI socket of an in-process plugin on
// real backends: the local Ceph (RBD, CephFS) and the OneFS simulator; and, with a private
// Ceph whose monitor it freezes, that one backend's outage does not stop creates on another.
package quotatest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

const mib = 1 << 20

var rwx = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
}

var rwo = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// stack is one plugin serving the local Ceph's rbd pool and cephfs, and a OneFS simulator.
type stack struct {
	drv  *harness.Driver
	cc   csi.ControllerClient
	sim  *harness.OneFS
	conf string
}

// backends the quota tests run on, by the names the stack's config gives them.
var backends = []string{"q-rbd", "q-cephfs", "q-isilon"}

func startStack(t *testing.T, tenants config.Tenants) *stack {
	t.Helper()
	sim := harness.StartOneFS(t)
	cfg := &config.Config{Backends: []config.Backend{
		harness.RBDBackend(t, "q-rbd"), harness.CephFSBackend(t, "q-cephfs"), sim.Backend(t, "q-isilon"),
	}, Tenants: tenants}
	ready := uniqueTenant(t, "qready")
	if cfg.Tenants.Overrides == nil {
		cfg.Tenants.Overrides = map[string]config.TenantQuota{}
	}
	cfg.Tenants.Overrides[ready] = config.TenantQuota{MaxVolumes: 1}
	drv := harness.StartDriver(t, cfg, driver.ModeController)
	s := &stack{drv: drv, cc: drv.Controller(), sim: sim, conf: harness.CephConf()}
	s.createOnceRead(t, request("ready-"+ready, "q-isilon", ready, mib))
	return s
}

// createOnceRead creates r, retrying UNAVAILABLE as a CO would until the plugin has read
// tenant usage from every backend: the plugin serves after at most 10 s, and on a loaded
// machine a backend's first reading can take longer (a burst sent before is refused whole).
func (s *stack) createOnceRead(t *testing.T, r *csi.CreateVolumeRequest) string {
	t.Helper()
	for end := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		id, err := s.create(t, r)
		if err == nil {
			return id
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(end) {
			t.Fatalf("create %s once the plugin has read tenant usage: %v", r.Name, err)
		}
	}
}

// uniqueTenant is a tenant no earlier run used; its RBD namespace goes at the end.
func uniqueTenant(t *testing.T, prefix string) string {
	tenant := prefix + "-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	t.Cleanup(func() { exec.Command("rbd", "-c", harness.CephConf(), "namespace", "rm", "rbd/"+tenant).Run() })
	return tenant
}

func request(name, be, tenant string, bytes int64) *csi.CreateVolumeRequest {
	capability := rwx
	if be == "q-rbd" || be == "p-rbd" {
		capability = rwo
	}
	return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes},
		VolumeCapabilities: []*csi.VolumeCapability{capability},
		Parameters:         map[string]string{backend.ParamBackend: be, backend.ParamPVCNamespace: tenant}}
}

// create sends r as the external-provisioner does: an ABORTED answer (a clone the Ceph
// mgr is still copying, an operation in flight) is retried with the same request until a
// final answer, for up to 2 minutes. The volume is deleted at the end of the test, with the
// same retries.
func (s *stack) create(t *testing.T, r *csi.CreateVolumeRequest) (string, error) {
	var resp *csi.CreateVolumeResponse
	err := retryAborted(func(ctx context.Context) (err error) {
		resp, err = s.cc.CreateVolume(ctx, r)
		return err
	})
	if err != nil {
		return "", err
	}
	id := resp.Volume.VolumeId
	t.Cleanup(func() {
		if err := retryAborted(func(ctx context.Context) error {
			_, err := s.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			return err
		}); err != nil {
			t.Errorf("cleanup: delete %s: %v", id, err)
		}
	})
	return id, nil
}

// retryAborted calls fn until it answers anything but ABORTED, or 2 minutes have passed.
func retryAborted(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		err := fn(ctx)
		if status.Code(err) != codes.Aborted || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// burst sends the requests at once and counts the answers by code.
func (s *stack) burst(t *testing.T, reqs []*csi.CreateVolumeRequest) map[codes.Code]int {
	var mu sync.Mutex
	got := map[codes.Code]int{}
	var wg sync.WaitGroup
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.create(t, r)
			mu.Lock()
			got[status.Code(err)]++
			mu.Unlock()
			if c := status.Code(err); c != codes.OK && c != codes.ResourceExhausted {
				t.Errorf("%s: %v", r.Name, err)
			}
		}()
	}
	wg.Wait()
	return got
}

// onStorage counts the tenant's volumes as the storage itself lists them.
func (s *stack) onStorage(t *testing.T, be, tenant string) int {
	t.Helper()
	switch be {
	case "q-rbd":
		out, err := exec.Command("rbd", "-c", s.conf, "ls", "rbd/"+tenant, "--format", "json").Output()
		if err != nil {
			t.Fatalf("rbd ls rbd/%s: %v", tenant, err)
		}
		var names []string
		if err := json.Unmarshal(out, &names); err != nil {
			t.Fatal(err)
		}
		return countPrefixed(names)
	case "q-cephfs":
		out, err := exec.Command("ceph", "-c", s.conf, "fs", "subvolume", "ls", "cephfs", "--group_name", "shiphold-"+tenant, "--format", "json").Output()
		if err != nil {
			t.Fatalf("ceph fs subvolume ls: %v", err)
		}
		var subs []struct{ Name string }
		if err := json.Unmarshal(out, &subs); err != nil {
			t.Fatal(err)
		}
		names := make([]string, len(subs))
		for i, sv := range subs {
			names[i] = sv.Name
		}
		return countPrefixed(names)
	default:
		entries, err := os.ReadDir(filepath.Join(s.sim.Root, "data", "shiphold", tenant))
		if err != nil {
			t.Fatalf("the simulator's tenant directory: %v", err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return countPrefixed(names)
	}
}

func countPrefixed(names []string) int {
	n := 0
	for _, name := range names {
		if strings.HasPrefix(name, "csi-vol-") {
			n++
		}
	}
	return n
}

// TestQuotaBurst: on every backend, 50 creates of one tenant at once against a quota of 10
// volumes leave exactly 10 volumes on the storage, and 40 RESOURCE_EXHAUSTED answers.
func TestQuotaBurst(t *testing.T) {
	tenants := map[string]string{}
	quotas := config.Tenants{Overrides: map[string]config.TenantQuota{}}
	for _, be := range backends {
		tenants[be] = uniqueTenant(t, "qb"+be[2:5])
		quotas.Overrides[tenants[be]] = config.TenantQuota{MaxVolumes: 10}
	}
	s := startStack(t, quotas)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			tenant := tenants[be]
			var reqs []*csi.CreateVolumeRequest
			for i := range 50 {
				reqs = append(reqs, request(fmt.Sprintf("pvc-%s-%d", tenant, i), be, tenant, mib))
			}
			start := time.Now()
			got := s.burst(t, reqs)
			stored := s.onStorage(t, be, tenant)
			t.Logf("quota burst %s: creates=50 quota=10 created=%d refused=%d on_storage=%d took=%s",
				be, got[codes.OK], got[codes.ResourceExhausted], stored, time.Since(start).Round(time.Millisecond))
			if got[codes.OK] != 10 || got[codes.ResourceExhausted] != 40 || stored != 10 {
				t.Fatalf("50 concurrent creates against a quota of 10: answers %v, %d volumes on the storage", got, stored)
			}
		})
	}
}

// TestQuotaExpansion: on every backend, growing a volume past the tenant's capacity quota
// is RESOURCE_EXHAUSTED and leaves it as it was; growing it to the quota works.
func TestQuotaExpansion(t *testing.T) {
	tenants := map[string]string{}
	quotas := config.Tenants{Overrides: map[string]config.TenantQuota{}}
	for _, be := range backends {
		tenants[be] = uniqueTenant(t, "qe"+be[2:5])
		quotas.Overrides[tenants[be]] = config.TenantQuota{MaxBytes: 10 * mib}
	}
	s := startStack(t, quotas)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			tenant := tenants[be]
			a, err := s.create(t, request("a-"+tenant, be, tenant, 4*mib))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.create(t, request("b-"+tenant, be, tenant, 4*mib)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			expand := func(bytes int64) error {
				_, err := s.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: a, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes},
					VolumeCapability: request("", be, tenant, 0).VolumeCapabilities[0]})
				return err
			}
			// 6 MiB + 1 byte is over by one byte, by 1 MiB on RBD, which allocates whole MiB.
			over := "by 1 bytes"
			if be == "q-rbd" {
				over = "by 1048576 bytes"
			}
			err = expand(6*mib + 1)
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "quota of 10485760 bytes (maxBytes) "+over) {
				t.Fatalf("expansion past the quota: %v, want RESOURCE_EXHAUSTED naming maxBytes and %q", err, over)
			}
			t.Logf("quota expand %s: past the quota: %v", be, err)
			v, err := s.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: a})
			if err != nil || v.Volume.CapacityBytes != 4*mib {
				t.Fatalf("after a refused expansion the storage reports %v (%v), want 4 MiB", v, err)
			}
			if err := expand(6 * mib); err != nil {
				t.Fatalf("expansion to the quota: %v", err)
			}
			_, err = s.create(t, request("c-"+tenant, be, tenant, 1))
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("a create at the quota after the expansion: %v", err)
			}
		})
	}
}

// TestQuotaClones: on every backend, ten clones at once of a tenant one volume below its
// quota make one volume.
func TestQuotaClones(t *testing.T) {
	tenants := map[string]string{}
	quotas := config.Tenants{Overrides: map[string]config.TenantQuota{}}
	for _, be := range backends {
		tenants[be] = uniqueTenant(t, "qc"+be[2:5])
		quotas.Overrides[tenants[be]] = config.TenantQuota{MaxVolumes: 3}
	}
	s := startStack(t, quotas)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			tenant := tenants[be]
			src, err := s.create(t, request("src-"+tenant, be, tenant, mib))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.create(t, request("other-"+tenant, be, tenant, mib)); err != nil {
				t.Fatal(err)
			}
			var reqs []*csi.CreateVolumeRequest
			for i := range 10 {
				r := request(fmt.Sprintf("clone-%s-%d", tenant, i), be, tenant, mib)
				r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src}}}
				reqs = append(reqs, r)
			}
			got := s.burst(t, reqs)
			stored := s.onStorage(t, be, tenant)
			t.Logf("quota clones %s: clones=10 at quota-1: created=%d refused=%d on_storage=%d", be, got[codes.OK], got[codes.ResourceExhausted], stored)
			if got[codes.OK] != 1 || got[codes.ResourceExhausted] != 9 || stored != 3 {
				t.Fatalf("ten concurrent clones at quota-1: answers %v, %d volumes on the storage", got, stored)
			}
		})
	}
}

// TestQuotaCountsUnrecordedImages: an RBD image a create left without its record (the
// controller died between making the image and recording it) holds a place under the
// tenant's quota from the first reading on; the create's retry takes that place.
func TestQuotaCountsUnrecordedImages(t *testing.T) {
	tenant := uniqueTenant(t, "qu")
	conf := harness.CephConf()
	image := "rbd/" + tenant + "/csi-vol-" + volid.Hash("left-"+tenant)
	for _, args := range [][]string{{"namespace", "create", "rbd/" + tenant}, {"create", "--size", "4M", image}} {
		if out, err := exec.Command("rbd", append([]string{"-c", conf}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("rbd %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("rbd", "-c", conf, "rm", image).Run() })
	s := startStack(t, config.Tenants{Overrides: map[string]config.TenantQuota{tenant: {MaxVolumes: 1}}})
	_, err := s.create(t, request("other-"+tenant, "q-isilon", tenant, mib))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "has 1 volumes") {
		t.Fatalf("a create past a record-less image at the quota: %v, want RESOURCE_EXHAUSTED", err)
	}
	t.Logf("quota unrecorded-image: %v", err)
	if _, err := s.create(t, request("left-"+tenant, "q-rbd", tenant, 4*mib)); err != nil {
		t.Fatalf("the retry of the create that left the image: %v", err)
	}
	if n := s.onStorage(t, "q-rbd", tenant); n != 1 {
		t.Fatalf("%d images after the retry, want 1", n)
	}
}

// TestQuotaCountsAllocatedBytes: the capacity quota counts what the storage allocates, not
// what was asked: RBD rounds up to whole MiB, and a clone on RBD or OneFS is at least its
// source's size. A create that would pass the quota as allocated is refused before anything
// is made.
func TestQuotaCountsAllocatedBytes(t *testing.T) {
	tenants := map[string]string{}
	quotas := config.Tenants{Overrides: map[string]config.TenantQuota{}}
	for _, be := range []string{"q-rbd", "q-isilon"} {
		tenants[be] = uniqueTenant(t, "qa"+be[2:5])
		quotas.Overrides[tenants[be]] = config.TenantQuota{MaxBytes: 6 * mib}
	}
	rounding := uniqueTenant(t, "qarnd")
	quotas.Overrides[rounding] = config.TenantQuota{MaxBytes: 3*mib + mib/2}
	s := startStack(t, quotas)

	t.Run("rbd-rounding", func(t *testing.T) {
		if _, err := s.create(t, request("a-"+rounding, "q-rbd", rounding, 2*mib)); err != nil {
			t.Fatal(err)
		}
		// 1 MiB + 1 byte fits as asked (3 MiB + 1), not as allocated (2 MiB: 4 MiB in all).
		_, err := s.create(t, request("b-"+rounding, "q-rbd", rounding, mib+1))
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "2097152 more") {
			t.Fatalf("a create over the quota as allocated: %v, want RESOURCE_EXHAUSTED counting 2097152 bytes", err)
		}
		t.Logf("quota allocated rbd-rounding: %v", err)
		if n := s.onStorage(t, "q-rbd", rounding); n != 1 {
			t.Fatalf("%d images after the refusal, want 1", n)
		}
	})
	for _, be := range []string{"q-rbd", "q-isilon"} {
		t.Run(be+"-clone", func(t *testing.T) {
			tenant := tenants[be]
			src, err := s.create(t, request("src-"+tenant, be, tenant, 4*mib))
			if err != nil {
				t.Fatal(err)
			}
			clone := request("clone-"+tenant, be, tenant, mib)
			clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src}}}
			_, err = s.create(t, clone)
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "4194304 more") {
				t.Fatalf("a 1 MiB clone of a 4 MiB volume at a 6 MiB quota: %v, want RESOURCE_EXHAUSTED counting 4194304 bytes", err)
			}
			t.Logf("quota allocated %s clone: %v", be, err)
			if n := s.onStorage(t, be, tenant); n != 1 {
				t.Fatalf("%d volumes after the refused clone, want 1", n)
			}
		})
	}
}
