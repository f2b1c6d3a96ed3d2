package adopttest

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/gc"
	"github.com/shiphold/shiphold/pkg/tenant"
	"github.com/shiphold/shiphold/test/harness"
)

// quotaMiB is the capacity quota of the adopting tenant in the adoption tests: the adopted
// volume (32 MiB, grown to 64 MiB) fits, and so would the creates below were it not counted.
const quotaMiB = 80

// withQuota gives the tenant the quota.
func withQuota(cfg *config.Config, tenant string) {
	cfg.Tenants = config.Tenants{Overrides: map[string]config.TenantQuota{tenant: {MaxBytes: quotaMiB << 20}}}
}

// listed reports the capacity under which the plugin's ListVolumes lists id, walking pages
// of one entry as a CO with max_entries 1 does; false when no page has it.
func listed(t *testing.T, d *harness.Driver, id string) (int64, bool) {
	t.Helper()
	token := ""
	for pages := 0; pages < 1000; pages++ {
		resp, err := d.Controller().ListVolumes(ctxT(t), &csi.ListVolumesRequest{MaxEntries: 1, StartingToken: token})
		if err != nil {
			t.Fatalf("ListVolumes: %v", err)
		}
		for _, e := range resp.Entries {
			if e.Volume.VolumeId == id {
				return e.Volume.CapacityBytes, true
			}
		}
		if token = resp.NextToken; token == "" {
			return 0, false
		}
	}
	t.Fatal("ListVolumes pages never end")
	return 0, false
}

// counted checks that the adopted volume, now of size bytes, is one of the
// tenant's volumes wherever they are counted: the plugin's paged ListVolumes, the
// tenant's usage (shipholdctl volumes, tenants), the quota at CreateVolume, and gc (a
// candidate with no PV, none with its PV). Nothing here removes it.
func counted(t *testing.T, cfg *config.Config, d *harness.Driver, v *backend.Volume, size int64) {
	t.Helper()
	id := v.ID.String()
	if got, ok := listed(t, d, id); !ok || got != size {
		t.Fatalf("ListVolumes lists %s: %v with %d bytes, want it with %d", id, ok, got, size)
	}
	b, err := registry.Open(cfg, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	vols, err := tenant.Volumes(ctxT(t), b.Controllers, v.ID.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	usage := tenant.Summarize(vols, cfg.Tenants)
	if len(usage) != 1 || usage[0].Bytes < size {
		t.Fatalf("tenant usage %+v, want %s holding at least the adopted %d bytes", usage, v.ID.Tenant, size)
	}
	over := (quotaMiB<<20 - size) + 8<<20
	made, err := d.Controller().CreateVolume(ctxT(t), &csi.CreateVolumeRequest{Name: "pvc-over-" + suffix(),
		CapacityRange:      &csi.CapacityRange{RequiredBytes: over},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "")},
		Parameters:         map[string]string{backend.ParamBackend: v.ID.Backend, backend.ParamPVCNamespace: v.ID.Tenant}})
	if err == nil {
		d.Controller().DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: made.Volume.VolumeId})
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("CreateVolume of %d bytes for %s beside the adopted %d under a %d MiB quota: %v, want RESOURCE_EXHAUSTED", over, v.ID.Tenant, size, quotaMiB, err)
	}
	past := int64(quotaMiB+8) << 20
	_, err = d.Controller().ControllerExpandVolume(ctxT(t), &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: past}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("ControllerExpandVolume of the adopted %s to %d bytes under a %d MiB quota: %v, want RESOURCE_EXHAUSTED", id, past, quotaMiB, err)
	}
	gcSees(t, b.Controllers, v, nil, true)
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: v.RequestName},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "shiphold.csi.io", VolumeHandle: id}}}}
	gcSees(t, b.Controllers, v, pv, false)
}

// gcSees checks whether gc, in a cluster holding pv (none for nil), reports v as
// unreferenced; Find removes nothing.
func gcSees(t *testing.T, ctrls map[string]backend.Controller, v *backend.Volume, pv *corev1.PersistentVolume, want bool) {
	t.Helper()
	client := fake.NewSimpleClientset()
	if pv != nil {
		client = fake.NewSimpleClientset(pv)
	}
	cl, err := gc.ReadCluster(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	cands, errs := (&gc.Finder{Backends: ctrls, Cluster: cl, Tenant: v.ID.Tenant}).Find(ctxT(t))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := false
	for _, c := range cands {
		got = got || (c.Kind == gc.KindUnreferenced && c.Name == v.ID.String())
	}
	if got != want {
		t.Fatalf("gc reports %s unreferenced: %v, want %v (candidates %+v)", v.ID, got, want, cands)
	}
}

// unlisted fails when the plugin's ListVolumes still lists id (after its delete).
func unlisted(t *testing.T, d *harness.Driver, id string) {
	t.Helper()
	if _, ok := listed(t, d, id); ok {
		t.Fatalf("ListVolumes still lists %s after its DeleteVolume", id)
	}
}
