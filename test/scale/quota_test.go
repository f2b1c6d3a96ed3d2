package scale

import (
	"context"
	"fmt"
	"testing"
	"time"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

// TestQuotaReadingOfNewVolumesOnRealCeph: on the local cluster, a quota reading after the
// first (names listed, only new volumes read) counts what a full reading counts: volumes made
// and deleted by another controller, an RBD image still without its record, a volume resized
// outside only from the next full reading on.
func TestQuotaReadingOfNewVolumesOnRealCeph(t *testing.T) {
	cluster := harness.LocalCeph(t)
	store := openStore(t)
	tn := fmt.Sprintf("qr%d", time.Now().UnixNano()%1e8)
	for _, be := range []config.Backend{
		{Name: "qr-rbd", Kind: "rbd", Section: &rbd.Config{Cluster: cluster, Pool: "rbd", Mounter: "auto"}},
		{Name: "qr-cephfs", Kind: "cephfs", Section: &cephfs.Config{Cluster: cluster, FSName: "cephfs", SubvolumeGroupPrefix: "shiphold-", Mounter: "auto"}},
	} {
		t.Run(be.Kind, func(t *testing.T) { quotaReadings(t, store, be, tn) })
	}
}

func quotaReadings(t *testing.T, store *store, be config.Backend, tn string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bs, err := registry.Open(&config.Config{Backends: []config.Backend{be}}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	// Another controller's volumes: made and deleted through a controller of its own.
	other, err := registry.Open(&config.Config{Backends: []config.Backend{be}}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	oc := other.Controllers[be.Name]
	var made []*backend.Volume
	t.Cleanup(func() {
		for _, v := range made {
			_ = oc.DeleteVolume(context.Background(), v.ID, nil)
		}
		// The tenant's namespace or group goes once the mgr purged the deleted volumes; the
		// test does not wait for that (an empty one is left behind meanwhile).
		if be.Kind == "rbd" {
			_ = librbd.NamespaceRemove(store.io, tn)
		} else {
			_ = store.fsa.RemoveSubVolumeGroup("cephfs", "shiphold-"+tn)
		}
	})
	create := func(name string) {
		v, err := oc.CreateVolume(ctx, &backend.VolumeRequest{Name: name, Tenant: tn, RequiredBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, v)
	}
	create("a")
	create("b")
	l := tenant.NewLedger(bs.Controllers, config.Tenants{}, tenant.LedgerOptions{FullReadEvery: 3})
	read := func(want int, wantBytes int64, what string) {
		t.Helper()
		if err := l.Read(ctx, be.Name); err != nil {
			t.Fatal(err)
		}
		if u := l.Usage(tn); u.Volumes != want || u.Bytes != wantBytes {
			t.Fatalf("%s: the reading counts %d volumes, %d bytes; want %d, %d", what, u.Volumes, u.Bytes, want, wantBytes)
		}
	}
	read(2, 2<<20, "the first reading")

	create("c")
	if err := oc.DeleteVolume(ctx, made[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	made = made[1:]
	want, wantBytes := 2, int64(2<<20)
	if be.Kind == "rbd" { // an image whose create stopped before its record: it holds space
		io, err := store.conn.OpenIOContext("rbd")
		if err != nil {
			t.Fatal(err)
		}
		io.SetNamespace(tn)
		name := "csi-vol-" + volid.Hash("d")
		if _, err := librbd.Create(io, name, 3<<20, 22); err != nil {
			io.Destroy()
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = librbd.RemoveImage(io, name); io.Destroy() })
		want, wantBytes = 3, 5<<20
	}
	read(want, wantBytes, "a reading after volumes were made and deleted outside")

	if _, _, err := oc.ExpandVolume(ctx, made[0].ID, 4<<20, 0, nil); err != nil {
		t.Fatal(err)
	}
	read(want, wantBytes, "a reading of the names after a resize outside")
	read(want, wantBytes+3<<20, "the next full reading")
}
