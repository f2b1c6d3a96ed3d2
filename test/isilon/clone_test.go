package isilontest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/volid"
)

const cloneFiles = 20

// slowCloneSetup: a source volume of cloneFiles files, a simulator copying 100 ms per file
// (2 s a copy) and a controller whose Platform API calls are cut at 1 s, as the real
// driver's are at 30 s while OneFS keeps copying.
func slowCloneSetup(t *testing.T) (*fixture, *backend.Volume, func() *isilon.Controller) {
	f := setup(t)
	src := f.create(t, "pvc-clone-src", "shop", 16*mib)
	dir := f.realDir(src.Context[isilon.CtxExportPath])
	for i := 0; i < cloneFiles; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), bytes.Repeat([]byte{byte(i)}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.sim.Server.SetCopyDelay(100 * time.Millisecond)
	newCtrl := func() *isilon.Controller {
		be := f.be
		isi := *be.Section.(*isilon.Config)
		isi.RequestTimeout = "1s"
		isi.CopySettle = "500ms"
		be.Section = &isi
		c, err := isilon.NewController(&be)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	return f, src, newCtrl
}

// checkWholeClone fails unless dir holds every source file with its content.
func checkWholeClone(t *testing.T, f *fixture, v *backend.Volume, what string) {
	t.Helper()
	dir := f.realDir(v.Context[isilon.CtxExportPath])
	ents, _ := os.ReadDir(dir)
	for i := 0; i < cloneFiles; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)))
		if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, 4096)) {
			t.Fatalf("%s reported ready with %d of %d files (f%02d: %d bytes, %v)", what, len(ents), cloneFiles, i, len(b), err)
		}
	}
}

// retryCreate calls CreateVolume as a CO does, each call with a short deadline, until it
// succeeds or the time is up; every success must be a whole copy.
func retryCreate(t *testing.T, f *fixture, c *isilon.Controller, req *backend.VolumeRequest, within time.Duration) (*backend.Volume, []error) {
	t.Helper()
	var errs []error
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		v, err := c.CreateVolume(ctx, req)
		cancel()
		if err == nil {
			return v, errs
		}
		if c := backend.CodeOf(err); c != backend.Unavailable && c != backend.Pending {
			t.Fatalf("clone retry answered %v (%v): neither retryable nor in progress", c, err)
		}
		errs = append(errs, err)
		time.Sleep(200 * time.Millisecond)
	}
	return nil, errs
}

// TestSimCloneSurvivesACutCopy: the copy call is cut client-side while the array keeps
// copying; retries must neither fail for ever nor report a half copy as ready.
func TestSimCloneSurvivesACutCopy(t *testing.T) {
	for _, kind := range []string{"snapshot", "volume"} {
		t.Run(kind, func(t *testing.T) {
			f, src, newCtrl := slowCloneSetup(t)
			ctrl := newCtrl()
			req := &backend.VolumeRequest{Name: "pvc-clone-" + kind, Tenant: "shop", RequiredBytes: 16 * mib, SourceVolume: &src.ID}
			if kind == "snapshot" {
				snap, err := f.ctrl.CreateSnapshot(ctxT(t), src.ID, "snap-clone", nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.SourceVolume, req.SourceSnapshot = nil, &snap.ID
			}
			v, errs := retryCreate(t, f, ctrl, req, 20*time.Second)
			if v == nil {
				t.Fatalf("the clone never completed; %d retries, last: %v", len(errs), errs[len(errs)-1])
			}
			if len(errs) == 0 {
				t.Fatal("the 2 s copy finished within the first 1 s call: nothing was cut")
			}
			checkWholeClone(t, f, v, "clone")
			if q := f.quotas(t)[v.Context[isilon.CtxExportPath]]; q.Thresholds.Hard == nil || f.exportOf(v.Context[isilon.CtxExportPath]) == nil {
				t.Fatal("finished clone lacks its quota or export")
			}
			again, err := ctrl.CreateVolume(ctxT(t), req)
			if err != nil || again.ID != v.ID {
				t.Fatalf("retry of a finished clone %+v %v", again, err)
			}
			f.sim.Server.WaitCopies()
			checkWholeClone(t, f, v, "clone after the array's copies ended")
		})
	}
}

// TestSimCloneAfterControllerRestart: the controller dies mid-copy (its copy call goes away,
// the array's copy goes on); a new controller must not report the half copy, and must
// finish the clone without racing the copy still running on the array.
func TestSimCloneAfterControllerRestart(t *testing.T) {
	f, src, newCtrl := slowCloneSetup(t)
	first := newCtrl()
	req := &backend.VolumeRequest{Name: "pvc-clone-restart", Tenant: "shop", RequiredBytes: 16 * mib, SourceVolume: &src.ID}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	_, err := first.CreateVolume(ctx, req)
	cancel()
	if err == nil {
		t.Fatal("a 2 s clone finished within 700 ms")
	}
	first.Close() // the controller process ends
	second := newCtrl()
	v, errs := retryCreate(t, f, second, req, 30*time.Second)
	if v == nil {
		t.Fatalf("the clone never completed after the restart; %d retries, last: %v", len(errs), errs[len(errs)-1])
	}
	checkWholeClone(t, f, v, "clone after a controller restart")
	f.sim.Server.WaitCopies()
	checkWholeClone(t, f, v, "clone after the array's copies ended")
	// Nothing of the clone's work is left beside the volume.
	tenant, _ := os.ReadDir(f.realDir("/ifs/data/shiphold/shop"))
	for _, e := range tenant {
		if e.Name() != "csi-vol-"+volid.Hash(req.Name) && e.Name() != "csi-vol-"+src.ID.Hash {
			t.Fatalf("left in the tenant directory: %s", e.Name())
		}
	}
	if err := second.DeleteVolume(ctxT(t), v.ID, nil); err != nil {
		t.Fatal(err)
	}
}
