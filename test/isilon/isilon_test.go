// Package isilontest runs the Isilon backend against the OneFS Platform API simulator
// (test/onefssim): every call goes through goisilon over HTTPS, and results are checked in
// the simulator's state and its real directory tree.
package isilontest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/onefssim"
)

const (
	mib      = int64(1 << 20)
	password = "onefs-test-password"
)

type fixture struct {
	sim  *harness.OneFS
	be   config.Backend
	ctrl *isilon.Controller
}

func setup(t *testing.T) *fixture {
	t.Helper()
	sim := harness.StartOneFS(t)
	be := sim.Backend(t, "isi")
	ctrl, err := isilon.NewController(&be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctrl.Close)
	return &fixture{sim: sim, be: be, ctrl: ctrl}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) create(t *testing.T, name, tenant string, size int64) *backend.Volume {
	t.Helper()
	v, err := f.ctrl.CreateVolume(ctxT(t), &backend.VolumeRequest{Name: name, Tenant: tenant, RequiredBytes: size})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return v
}

// realDir is where the simulator keeps an /ifs path.
func (f *fixture) realDir(ifs string) string {
	return filepath.Join(f.sim.Root, strings.TrimPrefix(ifs, "/ifs/"))
}

// papi reads a Platform API resource with basic auth, beside the backend under test.
func (f *fixture) papi(t *testing.T, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.sim.URL+path, nil)
	req.SetBasicAuth("admin", password)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) papiDelete(t *testing.T, path string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, f.sim.URL+path, nil)
	req.SetBasicAuth("admin", password)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

type simQuota struct {
	ID         string `json:"id"`
	Path       string `json:"path"`
	Container  bool   `json:"container"`
	Enforced   bool   `json:"enforced"`
	Thresholds struct {
		Hard *int64 `json:"hard"`
	} `json:"thresholds"`
}

// quotas lists every quota by path, following the array's resume tokens.
func (f *fixture) quotas(t *testing.T) map[string]simQuota {
	out := map[string]simQuota{}
	for query := ""; ; {
		var resp struct {
			Quotas []simQuota `json:"quotas"`
			Resume *string    `json:"resume"`
		}
		f.papi(t, "/platform/1/quota/quotas"+query, &resp)
		for _, q := range resp.Quotas {
			out[q.Path] = q
		}
		if resp.Resume == nil || *resp.Resume == "" {
			return out
		}
		query = "?resume=" + url.QueryEscape(*resp.Resume)
	}
}

func (f *fixture) exportOf(dir string) *onefssim.Export {
	for _, e := range f.sim.Server.Exports() {
		if slices.Contains(e.Paths, dir) {
			return &e
		}
	}
	return nil
}

func wantCode(t *testing.T, err error, code backend.Code, what string) {
	t.Helper()
	if err == nil || backend.CodeOf(err) != code {
		t.Fatalf("%s: error %v (code %v), want %v", what, err, backend.CodeOf(err), code)
	}
}

func TestSimCreateIdempotentAlreadyExistsDelete(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	v := f.create(t, "pvc-a", "shop", 64*mib)
	dir := "/ifs/data/shiphold/shop/csi-vol-" + volid.Hash("pvc-a")
	if v.ID.Location != "" || v.ID.Tenant != "shop" || v.Context[isilon.CtxExportPath] != dir || v.Context[isilon.CtxNFSServer] != "127.0.0.1" || v.Context[isilon.CtxExportID] == "" {
		t.Fatalf("volume %+v", v)
	}
	if fi, err := os.Stat(f.realDir(dir)); err != nil || !fi.IsDir() {
		t.Fatalf("volume directory: %v", err)
	}
	qs := f.quotas(t)
	if q := qs[dir]; q.Thresholds.Hard == nil || *q.Thresholds.Hard != 64*mib || !q.Container || !q.Enforced {
		t.Fatalf("volume quota %+v", q)
	}
	if q, ok := qs["/ifs/data/shiphold/shop"]; !ok || q.Thresholds.Hard != nil || q.Enforced {
		t.Fatalf("tenant quota %+v (present %v), want an accounting quota without hard threshold", q, ok)
	}
	e := f.exportOf(dir)
	if e == nil || len(e.Clients)+len(e.RootClients)+len(e.ReadWriteClients) != 0 || !slices.Equal(e.ReadOnlyClients, []string{isilon.NoAccessClient}) {
		t.Fatalf("new export %+v, want only the placeholder", e)
	}

	again := f.create(t, "pvc-a", "shop", 64*mib)
	if again.ID != v.ID {
		t.Fatalf("retry gave %s, want %s", again.ID, v.ID)
	}
	if n := len(f.sim.Server.Exports()); n != 1 {
		t.Fatalf("%d exports after retry", n)
	}
	_, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-a", Tenant: "shop", RequiredBytes: 128 * mib})
	wantCode(t, err, backend.AlreadyExists, "same name, other size")

	got, err := f.ctrl.GetVolume(ctx, v.ID, nil)
	if err != nil || got.CapacityBytes != 64*mib || got.RequestName != "pvc-a" {
		t.Fatalf("GetVolume %+v %v", got, err)
	}
	list, err := f.ctrl.ListVolumes(ctx, "shop")
	if err != nil || len(list) != 1 || list[0].ID != v.ID || list[0].CapacityBytes != 64*mib {
		t.Fatalf("ListVolumes %v %v", list, err)
	}

	if err := f.ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	if e := f.exportOf(dir); e != nil {
		t.Fatalf("orphan export %+v", e)
	}
	if q, ok := f.quotas(t)[dir]; ok {
		t.Fatalf("orphan quota %+v", q)
	}
	if _, err := os.Stat(f.realDir(dir)); !os.IsNotExist(err) {
		t.Fatalf("directory left: %v", err)
	}
	if err := f.ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	_, err = f.ctrl.GetVolume(ctx, v.ID, nil)
	wantCode(t, err, backend.NotFound, "GetVolume after delete")
}

func TestSimDeleteTreats404AsDone(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	// Never created.
	never := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("never")}
	if err := f.ctrl.DeleteVolume(ctx, never, nil); err != nil {
		t.Fatalf("delete of a missing volume: %v", err)
	}
	// Partly deleted out of band: export and quota gone, directory left.
	v := f.create(t, "pvc-partial", "shop", 8*mib)
	dir := v.Context[isilon.CtxExportPath]
	f.papiDelete(t, "/platform/2/protocols/nfs/exports/"+v.Context[isilon.CtxExportID])
	f.papiDelete(t, "/platform/1/quota/quotas/"+f.quotas(t)[dir].ID)
	if err := f.ctrl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatalf("delete after out-of-band removal: %v", err)
	}
	if _, err := os.Stat(f.realDir(dir)); !os.IsNotExist(err) {
		t.Fatalf("directory left: %v", err)
	}
	// Snapshot already gone.
	s := volid.Snapshot{Volume: never, SnapHash: volid.Hash("gone")}
	if err := f.ctrl.DeleteSnapshot(ctx, s, nil); err != nil {
		t.Fatalf("delete of a missing snapshot: %v", err)
	}
}

func TestSimTenantPlacement(t *testing.T) {
	f := setup(t)
	a := f.create(t, "pvc-1", "team-a", 8*mib)
	b := f.create(t, "pvc-1", "team-b", 8*mib)
	if a.Context[isilon.CtxExportPath] == b.Context[isilon.CtxExportPath] {
		t.Fatal("two tenants share a directory")
	}
	for _, tenant := range []string{"team-a", "team-b"} {
		if _, ok := f.quotas(t)["/ifs/data/shiphold/"+tenant]; !ok {
			t.Fatalf("tenant %s has no directory quota", tenant)
		}
		l, err := f.ctrl.ListVolumes(ctxT(t), tenant)
		if err != nil || len(l) != 1 || l[0].ID.Tenant != tenant {
			t.Fatalf("ListVolumes(%s) = %v %v", tenant, l, err)
		}
	}
	all, err := f.ctrl.ListVolumes(ctxT(t), "")
	if err != nil || len(all) != 2 {
		t.Fatalf("ListVolumes(all) = %v %v", all, err)
	}
}

func TestSimPublishClientLists(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	v, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-pub", Tenant: "shop", RequiredBytes: 8 * mib,
		Parameters: map[string]string{isilon.ParamRootClientEnabled: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := v.Context[isilon.CtxExportPath]
	n1 := backend.Node{Name: "node-1", Address: "10.0.0.1"}
	n2 := backend.Node{Name: "node-2", Address: "10.0.0.2"}
	for i := 0; i < 2; i++ {
		pc, err := f.ctrl.PublishVolume(ctx, v.ID, n1, backend.PublishAccess{}, v.Context, nil)
		if err != nil || pc[isilon.PubExportPath] != dir || pc[isilon.PubNFSServer] != "127.0.0.1" {
			t.Fatalf("publish: %v %v", pc, err)
		}
	}
	if _, err := f.ctrl.PublishVolume(ctx, v.ID, n2, backend.PublishAccess{ReadOnly: true}, v.Context, nil); err != nil {
		t.Fatal(err)
	}
	e := f.exportOf(dir)
	if !slices.Equal(e.Clients, []string{"10.0.0.1"}) || !slices.Equal(e.RootClients, []string{"10.0.0.1"}) ||
		!slices.Contains(e.ReadOnlyClients, "10.0.0.2") || !slices.Contains(e.ReadOnlyClients, isilon.NoAccessClient) {
		t.Fatalf("export after publish %+v", e)
	}
	_, err = f.ctrl.PublishVolume(ctx, v.ID, n2, backend.PublishAccess{}, v.Context, nil)
	wantCode(t, err, backend.AlreadyExists, "read-write publish over a read-only one")

	for i := 0; i < 2; i++ {
		if err := f.ctrl.UnpublishVolume(ctx, v.ID, n1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.ctrl.UnpublishVolume(ctx, v.ID, n2, nil); err != nil {
		t.Fatal(err)
	}
	e = f.exportOf(dir)
	if len(e.Clients)+len(e.RootClients)+len(e.ReadWriteClients) != 0 || !slices.Equal(e.ReadOnlyClients, []string{isilon.NoAccessClient}) {
		t.Fatalf("export after unpublish %+v, want only the placeholder", e)
	}
	missing := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("missing")}
	_, err = f.ctrl.PublishVolume(ctx, missing, n1, backend.PublishAccess{}, nil, nil)
	wantCode(t, err, backend.NotFound, "publish of a missing volume")
	if err := f.ctrl.UnpublishVolume(ctx, missing, n1, nil); err != nil {
		t.Fatalf("unpublish of a missing volume: %v", err)
	}
}

func TestSimSnapshotAndClones(t *testing.T) {
	f := setup(t)
	ctx := ctxT(t)
	src := f.create(t, "pvc-src", "shop", 16*mib)
	srcDir := f.realDir(src.Context[isilon.CtxExportPath])
	if err := os.WriteFile(filepath.Join(srcDir, "data.txt"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := f.ctrl.CreateSnapshot(ctx, src.ID, "snap-1", nil, nil)
	if err != nil || !snap.Ready || snap.SizeBytes != 16*mib || snap.CreatedAt.IsZero() {
		t.Fatalf("CreateSnapshot %+v %v", snap, err)
	}
	again, err := f.ctrl.CreateSnapshot(ctx, src.ID, "snap-1", nil, nil)
	if err != nil || again.ID != snap.ID {
		t.Fatalf("snapshot retry %+v %v", again, err)
	}
	other := f.create(t, "pvc-other", "shop", 8*mib)
	_, err = f.ctrl.CreateSnapshot(ctx, other.ID, "snap-1", nil, nil)
	wantCode(t, err, backend.AlreadyExists, "same snapshot name, other source")
	if err := os.WriteFile(filepath.Join(srcDir, "data.txt"), []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}

	fromSnap, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-from-snap", Tenant: "shop", RequiredBytes: 16 * mib, SourceSnapshot: &snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.realDir(fromSnap.Context[isilon.CtxExportPath]), "data.txt")); err != nil || string(b) != "before" {
		t.Fatalf("clone from snapshot reads %q %v, want %q", b, err, "before")
	}
	fromVol, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-from-vol", Tenant: "shop", RequiredBytes: 16 * mib, SourceVolume: &src.ID})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.realDir(fromVol.Context[isilon.CtxExportPath]), "data.txt")); err != nil || string(b) != "after" {
		t.Fatalf("clone from volume reads %q %v, want %q", b, err, "after")
	}
	if e, q := f.exportOf(fromSnap.Context[isilon.CtxExportPath]), f.quotas(t)[fromVol.Context[isilon.CtxExportPath]]; e == nil || q.Thresholds.Hard == nil {
		t.Fatalf("clones lack their export (%+v) or quota (%+v)", e, q)
	}
	// A retry of a finished clone neither copies again nor fails.
	if _, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-from-snap", Tenant: "shop", RequiredBytes: 16 * mib, SourceSnapshot: &snap.ID}); err != nil {
		t.Fatalf("clone retry: %v", err)
	}
	_, err = f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-from-snap", Tenant: "shop", RequiredBytes: 16 * mib})
	wantCode(t, err, backend.AlreadyExists, "same name without the source")

	list, err := f.ctrl.ListSnapshots(ctx, &src.ID)
	if err != nil || len(list) != 1 || list[0].ID != snap.ID {
		t.Fatalf("ListSnapshots(source) %v %v", list, err)
	}
	if l, _ := f.ctrl.ListSnapshots(ctx, &other.ID); len(l) != 0 {
		t.Fatalf("ListSnapshots(other) %v", l)
	}
	// OneFS snapshots are independent of the directory: the source may go first.
	if err := f.ctrl.DeleteVolume(ctx, src.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ctrl.GetSnapshot(ctx, snap.ID); err != nil {
		t.Fatalf("snapshot after source delete: %v", err)
	}
	if err := f.ctrl.DeleteSnapshot(ctx, snap.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = f.ctrl.GetSnapshot(ctx, snap.ID)
	wantCode(t, err, backend.NotFound, "GetSnapshot after delete")
	_, err = f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-late", Tenant: "shop", RequiredBytes: 16 * mib, SourceSnapshot: &snap.ID})
	wantCode(t, err, backend.NotFound, "clone from a deleted snapshot")
}

func TestSimExpand(t *testing.T) {
	f := setup(t)
	v := f.create(t, "pvc-grow", "shop", 16*mib)
	size, node, err := f.ctrl.ExpandVolume(ctxT(t), v.ID, 48*mib, 0, nil)
	if err != nil || size != 48*mib || node {
		t.Fatalf("ExpandVolume = %d %v %v", size, node, err)
	}
	if q := f.quotas(t)[v.Context[isilon.CtxExportPath]]; q.Thresholds.Hard == nil || *q.Thresholds.Hard != 48*mib {
		t.Fatalf("quota after expand %+v", q)
	}
	if got, _ := f.ctrl.GetVolume(ctxT(t), v.ID, nil); got.CapacityBytes != 48*mib {
		t.Fatalf("GetVolume after expand %+v", got)
	}
	// Shrinking is a no-op that reports the current size.
	if size, _, err := f.ctrl.ExpandVolume(ctxT(t), v.ID, 8*mib, 0, nil); err != nil || size != 48*mib {
		t.Fatalf("ExpandVolume(smaller) = %d %v", size, err)
	}
}

func countLogins(sim *onefssim.Server) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Method == http.MethodPost && strings.HasPrefix(r.Path, "/session/1/session") && r.Status == 201 {
			n++
		}
	}
	return n
}

func TestSimSessionExpiryRelogin(t *testing.T) {
	f := setup(t)
	f.sim.Server.SetSessionTimeout(time.Second)
	f.create(t, "pvc-s1", "shop", 8*mib)
	before := countLogins(f.sim.Server)
	time.Sleep(1500 * time.Millisecond)
	f.create(t, "pvc-s2", "shop", 8*mib)
	if after := countLogins(f.sim.Server); after <= before {
		t.Fatalf("no new session login after expiry (%d -> %d)", before, after)
	}
}

func TestSimBadPassword(t *testing.T) {
	for _, auth := range []string{"session", "basic"} {
		t.Run(auth, func(t *testing.T) {
			f := setup(t)
			be := f.be
			isi := *be.Section.(*isilon.Config)
			isi.AuthType = auth
			isi.CredentialsFile = filepath.Join(t.TempDir(), "creds")
			if err := os.WriteFile(isi.CredentialsFile, []byte("username: admin\npassword: wrong-secret-123\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			be.Section = &isi
			ctrl, err := isilon.NewController(&be)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ctrl.CreateVolume(ctxT(t), &backend.VolumeRequest{Name: "pvc-x", Tenant: "shop", RequiredBytes: mib})
			wantCode(t, err, backend.InvalidArgument, "bad password")
			if !strings.Contains(err.Error(), "check credentials") || strings.Contains(err.Error(), "wrong-secret-123") {
				t.Fatalf("message %q must say check credentials and never hold the password", err)
			}
			// CSI secrets win over the file.
			_, err = ctrl.CreateVolume(ctxT(t), &backend.VolumeRequest{Name: "pvc-x", Tenant: "shop", RequiredBytes: mib,
				Secrets: map[string]string{"username": "admin", "password": password}})
			if err != nil {
				t.Fatalf("with good secrets: %v", err)
			}
			_, err = ctrl.CreateVolume(ctxT(t), &backend.VolumeRequest{Name: "pvc-y", Tenant: "shop", RequiredBytes: mib,
				Secrets: map[string]string{"username": "admin"}})
			wantCode(t, err, backend.InvalidArgument, "secret without password")
			if !strings.Contains(err.Error(), `"password"`) {
				t.Fatalf("message %q must name the missing key", err)
			}
		})
	}
}

func TestSimUnreachableDoesNotStopConstruction(t *testing.T) {
	be := config.Backend{Name: "isi", Kind: "isilon", Section: &isilon.Config{
		Endpoint: "https://127.0.0.1:1", IsiPath: "/ifs/data/shiphold", NFSServer: "127.0.0.1",
		InsecureSkipVerify: true, CredentialsFile: "/nonexistent", RequestTimeout: "2s",
	}}
	ctrl, err := isilon.NewController(&be)
	if err != nil {
		t.Fatalf("construction must not contact the array: %v", err)
	}
	_, err = ctrl.CreateVolume(ctxT(t), &backend.VolumeRequest{Name: "x", Tenant: "t", RequiredBytes: mib,
		Secrets: map[string]string{"username": "a", "password": "b"}})
	wantCode(t, err, backend.Unavailable, "unreachable array")
	if !strings.Contains(err.Error(), "https://127.0.0.1:1") {
		t.Fatalf("message %q must name the endpoint", err)
	}
	if err := ctrl.Probe(ctxT(t)); err == nil {
		t.Fatal("Probe of an unreachable array succeeded")
	}
}

func TestSimProbeCapacity(t *testing.T) {
	f := setup(t)
	if err := f.ctrl.Probe(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	avail, err := f.ctrl.Capacity(ctxT(t), nil)
	if err != nil || avail <= 0 {
		t.Fatalf("Capacity = %d %v", avail, err)
	}
}

func TestSimHungArray(t *testing.T) {
	f := setup(t)
	f.create(t, "pvc-warm", "shop", mib) // connected and logged in
	f.sim.Server.SetHang(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := f.ctrl.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-hang", Tenant: "shop", RequiredBytes: mib})
	took := time.Since(start)
	if err == nil || (backend.CodeOf(err) != backend.Unavailable && !errors.Is(err, context.DeadlineExceeded)) {
		t.Fatalf("hung array: %v (code %v)", err, backend.CodeOf(err))
	}
	if took > 3*time.Second {
		t.Fatalf("call took %s with a 2s deadline", took)
	}
	if err := f.ctrl.Probe(context.Background()); err == nil {
		t.Fatal("Probe of a hung array succeeded")
	}
	f.sim.Server.SetHang(false)
	f.create(t, "pvc-after-hang", "shop", mib)
}
