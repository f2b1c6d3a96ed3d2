package isilontest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/onefssim"
)

// The driver against the places where OneFS answers differently from the old simulator:
// attribute name case, snapshot size, export conflicts, 409s that do not mean "exists",
// paged lists.

// TestSimSameNameOtherSizeRefused: OneFS stores header attribute names upper-cased; the
// driver must still find its request record, so a same-name request of another size is
// refused instead of adopting the volume.
func TestSimSameNameOtherSizeRefused(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	v := f.create(t, "pvc-case", "shop", 64*mib)
	got, err := f.ctrl.GetVolume(ctx, v.ID, nil)
	if err != nil || got.RequestName != "pvc-case" || got.CapacityBytes != 64*mib {
		t.Fatalf("GetVolume right after create = %+v %v: the request record is not found", got, err)
	}
	_, err = f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-case", Tenant: "shop", RequiredBytes: 128 * mib})
	wantCode(t, err, backend.AlreadyExists, "same name, other size, first retry")
	if q := f.quotas(t)[v.Context[isilon.CtxExportPath]]; q.Thresholds.Hard == nil || *q.Thresholds.Hard != 64*mib {
		t.Fatalf("quota after the refused request %+v", q)
	}
	again := f.create(t, "pvc-case", "shop", 64*mib)
	if again.ID != v.ID || again.CapacityBytes != 64*mib {
		t.Fatalf("retry %+v", again)
	}
}

// TestSimSnapshotSizeBytes: OneFS's snapshot size is the snapshot's own delta (4 KiB for a
// fresh one); size_bytes must be the volume's size when the snapshot was taken, also after
// the volume grew or was deleted.
func TestSimSnapshotSizeBytes(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	v := f.create(t, "pvc-snapsize", "shop", 16*mib)
	if err := os.WriteFile(filepath.Join(f.realDir(v.Context[isilon.CtxExportPath]), "data"), make([]byte, mib), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := f.ctrl.CreateSnapshot(ctx, v.ID, "snap-size", nil, nil)
	if err != nil || snap.SizeBytes != 16*mib {
		t.Fatalf("CreateSnapshot %+v %v, want size_bytes %d", snap, err, 16*mib)
	}
	if _, _, err := f.ctrl.ExpandVolume(ctx, v.ID, 32*mib, 0, nil); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got, err := f.ctrl.GetSnapshot(ctx, snap.ID)
		if err != nil || got.SizeBytes != 16*mib {
			t.Fatalf("GetSnapshot %s: %+v %v, want %d", when, got, err, 16*mib)
		}
		list, err := f.ctrl.ListSnapshots(ctx, nil)
		if err != nil || len(list) != 1 || list[0].SizeBytes != 16*mib {
			t.Fatalf("ListSnapshots %s: %v %v", when, list, err)
		}
	}
	check("after the volume grew")
	if err := f.ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	check("after the volume was deleted")
	// A restore asked smaller than the snapshot gets the snapshot's size.
	r, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-restore-size", Tenant: "shop", RequiredBytes: mib, SourceSnapshot: &snap.ID})
	if err != nil || r.CapacityBytes != 16*mib {
		t.Fatalf("restore of 1 MiB = %+v %v, want the snapshot's %d bytes", r, err, 16*mib)
	}
}

func rawPOST(t *testing.T, f *fixture, path, body string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, f.sim.URL+path, strings.NewReader(body))
	req.SetBasicAuth("admin", password)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestSimExportCreatedConcurrently: another controller creates the volume's export between
// this one's lookup and its create; OneFS refuses the duplicate (409 AEC_CONFLICT). The
// create must find the export made meanwhile, not fail with ALREADY_EXISTS.
func TestSimExportCreatedConcurrently(t *testing.T) {
	f := setup(t)
	var raced atomic.Bool
	f.sim.Server.SetRequestHook(func(r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/platform/2/protocols/nfs/exports") && raced.CompareAndSwap(false, true) {
			dir := "/ifs/data/shiphold/shop/csi-vol-" + volid.Hash("pvc-race")
			if code, body := rawPOST(t, f, "/platform/2/protocols/nfs/exports?zone=System",
				fmt.Sprintf(`{"paths":[%q],"read_only_clients":[%q]}`, dir, isilon.NoAccessClient)); code != 201 {
				t.Errorf("the other controller's export: %d %s", code, body)
			}
		}
	})
	v := f.create(t, "pvc-race", "shop", 8*mib)
	if !raced.Load() {
		t.Fatal("the race was not staged")
	}
	if n := len(f.sim.Server.Exports()); n != 1 {
		t.Fatalf("%d exports", n)
	}
	if v.Context[isilon.CtxExportID] != fmt.Sprint(f.sim.Server.Exports()[0].ID) {
		t.Fatalf("volume context export %s, the array has %+v", v.Context[isilon.CtxExportID], f.sim.Server.Exports())
	}
}

// TestSimConflictIsNotAlreadyExists: OneFS answers 409 for transient conflicts too (a
// configuration write that lost its retries, a recursive delete racing a writer). The
// driver must not take them for "it exists": a volume must never be left without its
// hard quota, and a delete must be retried, not reported ALREADY_EXISTS.
func TestSimConflictIsNotAlreadyExists(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	// The first 409 hits the tenant's quota, the second (tenant known) the volume's.
	for _, name := range []string{"pvc-409", "pvc-409-b"} {
		f.sim.Server.InjectFault(onefssim.Fault{Method: http.MethodPost, Path: "/platform/1/quota/quotas", Status: 409,
			Code: "AEC_CONFLICT", Message: "Unable to write configuration: too many concurrent changes, try again"})
		req := &backend.VolumeRequest{Name: name, Tenant: "shop", RequiredBytes: 8 * mib}
		dir := "/ifs/data/shiphold/shop/csi-vol-" + volid.Hash(name)
		_, err := f.ctrl.CreateVolume(ctx, req)
		if c := backend.CodeOf(err); err != nil && (c == backend.AlreadyExists || c == backend.Internal) {
			t.Fatalf("%s: transient 409 on quota create: %v (code %v), want a retryable code", name, err, c)
		}
		if err == nil {
			qs := f.quotas(t)
			if _, ok := qs["/ifs/data/shiphold/shop"]; !ok {
				t.Fatalf("%s: CreateVolume succeeded after a transient 409 and left the tenant without its quota", name)
			}
			if q, ok := qs[dir]; !ok || q.Thresholds.Hard == nil {
				t.Fatalf("%s: CreateVolume succeeded after a transient 409 and left the volume without its hard quota", name)
			}
		}
		if _, err := f.ctrl.CreateVolume(ctx, req); err != nil {
			t.Fatal(err)
		}
		if q, ok := f.quotas(t)[dir]; !ok || q.Thresholds.Hard == nil || *q.Thresholds.Hard != 8*mib {
			t.Fatalf("%s: quota after the retry %+v", name, q)
		}
	}
	dir := "/ifs/data/shiphold/shop/csi-vol-" + volid.Hash("pvc-409")
	vol, _ := f.ctrl.GetVolume(ctx, volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("pvc-409")}, nil)
	f.sim.Server.InjectFault(onefssim.Fault{Method: http.MethodDelete, Path: "/namespace" + dir, Status: 409,
		Code: "AEC_CONFLICT", Message: fmt.Sprintf("The directory '%s' is not empty.", strings.TrimPrefix(dir, "/ifs/"))})
	err := f.ctrl.DeleteVolume(ctx, vol.ID, nil)
	if c := backend.CodeOf(err); err == nil || c == backend.AlreadyExists || c == backend.Internal {
		t.Fatalf("delete racing a writer: %v (code %v), want a retryable code", err, c)
	}
	if err := f.ctrl.DeleteVolume(ctx, vol.ID, nil); err != nil {
		t.Fatalf("delete retry: %v", err)
	}
	if _, err := os.Stat(f.realDir(dir)); !os.IsNotExist(err) {
		t.Fatalf("directory left: %v", err)
	}
}

// TestSimListVolumesPaged: the array pages directory listings (the harness at 3 entries)
// and the resume token carries no filter; with files beside the volume directories, a
// page asked without type=container shifts and repeats entries.
func TestSimListVolumesPaged(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	var want []string
	for i := 0; i < 7; i++ {
		v := f.create(t, fmt.Sprintf("pvc-page-%d", i), "shop", mib)
		want = append(want, v.ID.String())
	}
	f.create(t, "pvc-other-tenant", "web", mib)
	for _, n := range []string{"0-notes.txt", "1-readme", "b-file"} {
		if err := os.WriteFile(filepath.Join(f.realDir("/ifs/data/shiphold/shop"), n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(l []*backend.Volume) []string {
		var out []string
		for _, v := range l {
			out = append(out, v.ID.String())
		}
		sort.Strings(out)
		return out
	}
	sort.Strings(want)
	list, err := f.ctrl.ListVolumes(ctx, "shop")
	if err != nil || !slices.Equal(ids(list), want) {
		t.Fatalf("ListVolumes(shop) = %v %v\nwant %v", ids(list), err, want)
	}
	for _, v := range list {
		if v.CapacityBytes != mib {
			t.Fatalf("capacity of %s = %d (quota list paged?)", v.ID, v.CapacityBytes)
		}
	}
	all, err := f.ctrl.ListVolumes(ctx, "")
	if err != nil || len(all) != 8 {
		t.Fatalf("ListVolumes(all) = %d %v", len(all), err)
	}
}

func rawPUT(t *testing.T, f *fixture, path, body string) (int, string) {
	req, _ := http.NewRequest(http.MethodPut, f.sim.URL+path, strings.NewReader(body))
	req.SetBasicAuth("admin", password)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}
