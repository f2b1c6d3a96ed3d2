package driver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

const mib = 1 << 20

func tenantReq(name, be, tenant string, bytes int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)},
		Parameters:         map[string]string{backend.ParamBackend: be, backend.ParamPVCNamespace: tenant}}
}

func cloneOf(volumeID string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volumeID}}}
}

// burst sends the requests at once and counts the answers by code.
func burst(t *testing.T, d *Driver, reqs []*csi.CreateVolumeRequest) map[codes.Code]int {
	t.Helper()
	var mu sync.Mutex
	got := map[codes.Code]int{}
	var wg sync.WaitGroup
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.CreateVolume(context.Background(), r)
			mu.Lock()
			got[status.Code(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return got
}

func (f *fakeController) count(tenant string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.vols {
		if v.ID.Tenant == tenant {
			n++
		}
	}
	return n
}

// TestQuotaHoldsUnderConcurrentCreates: 50 creates of one tenant at once against a quota
// of 10 volumes make exactly 10 volumes; the other 40 are RESOURCE_EXHAUSTED.
func TestQuotaHoldsUnderConcurrentCreates(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 10}})
	f.rbd.createDelay = 20 * time.Millisecond
	var reqs []*csi.CreateVolumeRequest
	for i := range 50 {
		reqs = append(reqs, tenantReq(fmt.Sprintf("pvc-%d", i), "ceph-rbd", "shop", mib))
	}
	got := burst(t, f.d, reqs)
	if n := f.rbd.count("shop"); n != 10 || got[codes.OK] != 10 || got[codes.ResourceExhausted] != 40 {
		t.Fatalf("50 concurrent creates against a quota of 10: %d volumes made, answers %v", n, got)
	}
}

// TestQuotaHoldsUnderConcurrentClones: at quota-1, ten clones at once give one volume.
func TestQuotaHoldsUnderConcurrentClones(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 10}})
	ctx := context.Background()
	var src string
	for i := range 9 {
		r, err := f.d.CreateVolume(ctx, tenantReq(fmt.Sprintf("pvc-%d", i), "isilon", "shop", mib))
		if err != nil {
			t.Fatal(err)
		}
		src = r.Volume.VolumeId
	}
	f.nfs.createDelay = 20 * time.Millisecond
	var reqs []*csi.CreateVolumeRequest
	for i := range 10 {
		r := tenantReq(fmt.Sprintf("clone-%d", i), "isilon", "shop", mib)
		r.VolumeContentSource = cloneOf(src)
		reqs = append(reqs, r)
	}
	got := burst(t, f.d, reqs)
	if n := f.nfs.count("shop"); n != 10 || got[codes.OK] != 1 || got[codes.ResourceExhausted] != 9 {
		t.Fatalf("10 concurrent clones at quota-1: %d volumes (want 10), answers %v", n, got)
	}
}

// TestQuotaCoversExpansion: a tenant cannot grow volumes past its capacity quota.
func TestQuotaCoversExpansion(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxBytes: 4 * mib}})
	ctx := context.Background()
	a, err := f.d.CreateVolume(ctx, tenantReq("a", "isilon", "shop", mib))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.CreateVolume(ctx, tenantReq("b", "isilon", "shop", mib)); err != nil {
		t.Fatal(err)
	}
	expand := func(bytes int64) error {
		_, err := f.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: a.Volume.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes}})
		return err
	}
	wantCode(t, expand(3*mib+1), codes.ResourceExhausted, "quota of 4194304 bytes (maxBytes) by 1 bytes")
	if v, _ := f.nfs.GetVolume(ctx, mustParse(t, a.Volume.VolumeId), nil); v.CapacityBytes != mib {
		t.Fatalf("a refused expansion grew the volume to %d bytes", v.CapacityBytes)
	}
	if err := expand(3 * mib); err != nil {
		t.Fatalf("an expansion to exactly the quota: %v", err)
	}
	wantCode(t, f.d.createErr(tenantReq("c", "isilon", "shop", 1)), codes.ResourceExhausted, "quota of")
	if err := expand(2 * mib); err != nil {
		t.Fatalf("a request below the current size changes nothing and must pass: %v", err)
	}
}

// TestQuotaCountsAllocatedBytes: RBD allocates whole MiB and a clone keeps its source's
// size; the quota counts what is allocated, before anything is created.
func TestQuotaCountsAllocatedBytes(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxBytes: 11*mib + mib/2}})
	f.rbd.unit = mib
	for i := range 5 {
		if err := f.d.createErr(tenantReq(fmt.Sprintf("pvc-%d", i), "ceph-rbd", "shop", mib+1)); err != nil {
			t.Fatal(err)
		}
	}
	// 10 MiB allocated: 1 MiB + 1 byte more fits as asked, not as allocated (2 MiB).
	wantCode(t, f.d.createErr(tenantReq("pvc-5", "ceph-rbd", "shop", mib+1)), codes.ResourceExhausted, "2097152 more")
	if n := f.rbd.count("shop"); n != 5 {
		t.Fatalf("%d volumes after a refused create, want 5", n)
	}

	g := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxBytes: 6 * mib}})
	src, err := g.d.CreateVolume(context.Background(), tenantReq("big", "isilon", "shop", 4*mib))
	if err != nil {
		t.Fatal(err)
	}
	clone := tenantReq("small-clone", "isilon", "shop", mib)
	clone.VolumeContentSource = cloneOf(src.Volume.VolumeId)
	wantCode(t, g.d.createErr(clone), codes.ResourceExhausted, "4194304 more")
	if n := g.nfs.count("shop"); n != 1 {
		t.Fatalf("a clone past the quota was created: %d volumes", n)
	}
}

// TestQuotaCountsUnfinishedClones: a clone the storage is still copying (Pending) holds
// its place; its retry is counted once.
func TestQuotaCountsUnfinishedClones(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 2}})
	ctx := context.Background()
	src, err := f.d.CreateVolume(ctx, tenantReq("src", "isilon", "shop", mib))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	copying := true
	f.nfs.beforeCreate = func(r *backend.VolumeRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if r.SourceVolume != nil && copying {
			return backend.Errorf(backend.Pending, "the clone's data is still being copied; retry")
		}
		return nil
	}
	clone := tenantReq("clone", "isilon", "shop", mib)
	clone.VolumeContentSource = cloneOf(src.Volume.VolumeId)
	wantCode(t, f.d.createErr(clone), codes.Aborted, "still being copied")
	wantCode(t, f.d.createErr(tenantReq("other", "isilon", "shop", mib)), codes.ResourceExhausted, "1 of them being created")
	mu.Lock()
	copying = false
	mu.Unlock()
	if err := f.d.createErr(clone); err != nil {
		t.Fatalf("the clone's retry: %v", err)
	}
	wantCode(t, f.d.createErr(tenantReq("other", "isilon", "shop", mib)), codes.ResourceExhausted, "has 2 volumes, its quota")
}

// TestQuotaDeleteFreesPlace: a delete gives its place back at once, without a reading.
func TestQuotaDeleteFreesPlace(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 1}})
	ctx := context.Background()
	a, err := f.d.CreateVolume(ctx, tenantReq("a", "ceph-rbd", "shop", mib))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.d.createErr(tenantReq("b", "isilon", "shop", mib)), codes.ResourceExhausted, "quota is 1 volumes")
	if _, err := f.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: a.Volume.VolumeId}); err != nil {
		t.Fatal(err)
	}
	if err := f.d.createErr(tenantReq("b", "isilon", "shop", mib)); err != nil {
		t.Fatalf("a deleted volume still counts: %v", err)
	}
}

// TestQuotaSurvivesAnotherBackendsOutage: with one backend's monitors frozen, creates of a
// tenant with a quota go on on the other backend at their usual speed: the check lists no
// storage.
func TestQuotaSurvivesAnotherBackendsOutage(t *testing.T) {
	f := newFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 100}})
	ctx := context.Background()
	if err := f.d.createErr(tenantReq("on-rbd", "ceph-rbd", "shop", mib)); err != nil {
		t.Fatal(err)
	}
	frozen := make(chan struct{})
	defer close(frozen)
	f.rbd.mu.Lock()
	f.rbd.listBlock = frozen
	f.rbd.mu.Unlock()
	f.rbd.lists.Store(0)
	f.nfs.lists.Store(0)
	for i := range 5 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := f.d.CreateVolume(cctx, tenantReq(fmt.Sprintf("on-isilon-%d", i), "isilon", "shop", mib))
		cancel()
		if err != nil {
			t.Fatalf("create on isilon while rbd is frozen: %v", err)
		}
	}
	if n := f.rbd.lists.Load() + f.nfs.lists.Load(); n != 0 {
		t.Fatalf("the quota check listed storage %d times on the request path", n)
	}
}

func mustParse(t *testing.T, id string) volid.Volume {
	t.Helper()
	v, err := volid.ParseVolume(id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (d *Driver) createErr(r *csi.CreateVolumeRequest) error {
	_, err := d.CreateVolume(context.Background(), r)
	return err
}

// A controller whose first reading of tenant usage has not ended (at 15,000 images it
// takes minutes) answers a quota tenant's create from a reading of that tenant alone, made
// on demand once per backend and tenant among concurrent creates, where it answered
// UNAVAILABLE until the full reading ended.
func TestQuotaReadsTheTenantOnDemandBeforeTheFirstReading(t *testing.T) {
	f := newUnreadFixture(t, config.Tenants{Default: config.TenantQuota{MaxVolumes: 10},
		Overrides: map[string]config.TenantQuota{"shop": {MaxVolumes: 3}}})
	ctx := context.Background()
	// What earlier controllers made: two volumes of shop and one of blog on rbd.
	for _, r := range []*backend.VolumeRequest{{Name: "old-1", Tenant: "shop", RequiredBytes: mib},
		{Name: "old-2", Tenant: "shop", RequiredBytes: mib}, {Name: "old-3", Tenant: "blog", RequiredBytes: mib}} {
		if _, err := f.rbd.CreateVolume(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.d.createErr(tenantReq("new-1", "ceph-rbd", "shop", mib)); err != nil {
		t.Fatalf("shop's first create before the first reading: %v", err)
	}
	err := f.d.createErr(tenantReq("new-2", "isilon", "shop", mib))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("shop's fourth volume: %v, want RESOURCE_EXHAUSTED (two volumes read on demand, one made)", err)
	}
	if lists, listed := f.rbd.lists.Load()+f.nfs.lists.Load(), f.rbd.listed.Load()+f.nfs.listed.Load(); lists != 2 || listed != 2 {
		t.Fatalf("shop's creates listed storage %d times and read %d volumes, want once per backend and shop's two", lists, listed)
	}

	var reqs []*csi.CreateVolumeRequest
	for i := range 16 {
		reqs = append(reqs, tenantReq(fmt.Sprintf("news-%d", i), "ceph-rbd", "news", mib))
	}
	if got := burst(t, f.d, reqs); got[codes.OK] != 10 || got[codes.ResourceExhausted] != 6 {
		t.Fatalf("16 concurrent creates of news under a quota of 10: %v", got)
	}
	if lists := f.rbd.lists.Load() + f.nfs.lists.Load(); lists != 4 {
		t.Fatalf("news's concurrent creates listed storage %d times in all, want once per backend (4 with shop's)", lists)
	}

	f.nfs.mu.Lock()
	f.nfs.listFailWith = backend.Errorf(backend.Unavailable, "the array does not answer")
	f.nfs.mu.Unlock()
	err = f.d.createErr(tenantReq("mail-1", "ceph-rbd", "mail", mib))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"isilon"`) || !strings.Contains(err.Error(), "the array does not answer") {
		t.Fatalf("a create while the tenant's usage on isilon cannot be read: %v, want UNAVAILABLE naming isilon and why", err)
	}
}
