package driver

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/shiphold/shiphold/pkg/config"
)

// A storage call that outlives its request's deadline keeps the volume locked: the CO's
// retry is ABORTED instead of starting a second delete beside the first, and goes through
// once the first has ended.
func TestLockHeldWhileAbandonedWorkRuns(t *testing.T) {
	f := newFixture(t, config.Tenants{})
	r, err := f.d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{mountCap(rwo)}, Parameters: map[string]string{"backend": "ceph-rbd"}})
	if err != nil {
		t.Fatal(err)
	}
	f.rbd.slowDelete = make(chan struct{})
	del := &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId}
	// Every call has a deadline, as a CO's calls do.
	call := func(fn func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return fn(ctx)
	}
	deleteVolume := func(ctx context.Context) error { _, err := f.d.DeleteVolume(ctx, del); return err }
	wantCode(t, call(deleteVolume), codes.Unavailable, "deadline")

	wantCode(t, call(deleteVolume), codes.Aborted, "still working")
	wantCode(t, call(func(ctx context.Context) error {
		_, err := f.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: del.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20}})
		return err
	}), codes.Aborted, "still working")
	if n := f.rbd.deletes.Load(); n != 1 {
		t.Fatalf("%d storage deletes started while the first still ran", n)
	}

	close(f.rbd.slowDelete)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := call(deleteVolume)
		if err == nil {
			break
		}
		wantCode(t, err, codes.Aborted, "still working")
		if time.Now().After(deadline) {
			t.Fatal("the volume stayed locked after its storage call ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(f.rbd.vols) != 0 {
		t.Fatal("volume not deleted")
	}
}

// A request that abandons nothing frees its keys as it returns.
func TestLockFreedWithTheRequest(t *testing.T) {
	in := newInflight()
	_, release, err := in.acquire(context.Background(), "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := in.acquire(context.Background(), "b"); err == nil {
		t.Fatal("a taken key was given twice")
	}
	release()
	if _, _, err := in.acquire(context.Background(), "a", "b"); err != nil {
		t.Fatalf("keys still taken after release: %v", err)
	}
}
