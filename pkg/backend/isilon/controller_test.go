package isilon

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dell/goisilon/api"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

var goodSecrets = map[string]string{SecretUsername: "admin", SecretPassword: "pw"}

func testController(t *testing.T) (*Controller, *fakeArray, *int) {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(creds, []byte("username: admin\npassword: pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewController(&config.Backend{Name: "isi", Kind: "isilon", Section: &Config{
		Endpoint: "https://array:8080", IsiPath: "/ifs/data/sh", NFSServer: "nfs.example", AccessZone: "System",
		CredentialsFile: creds,
	}})
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeArray()
	opens := 0
	c.conn.open = func(ctx context.Context, cr credentials) (array, error) {
		opens++
		return fake, nil
	}
	return c, fake, &opens
}

func req(name string, size int64) *backend.VolumeRequest {
	return &backend.VolumeRequest{Name: name, Tenant: "shop", RequiredBytes: size, Secrets: goodSecrets}
}

func TestCreateVolume(t *testing.T) {
	testCases := []struct {
		name    string
		prepare func(c *Controller, f *fakeArray)
		req     *backend.VolumeRequest
		want    backend.Code // Internal means success here
		check   func(t *testing.T, f *fakeArray, v *backend.Volume)
	}{
		{name: "new volume", req: req("pvc-1", 100), check: func(t *testing.T, f *fakeArray, v *backend.Volume) {
			dir := "/ifs/data/sh/shop/csi-vol-" + volid.Hash("pvc-1")
			if v.Context[CtxExportPath] != dir || v.Context[CtxNFSServer] != "nfs.example" || v.Context[CtxZone] != "System" || v.CapacityBytes != 100 {
				t.Fatalf("volume %+v", v)
			}
			if f.quotas[dir].Hard != 100 || f.quotas["/ifs/data/sh/shop"] == nil || f.quotas["/ifs/data/sh/shop"].Hard != 0 {
				t.Fatalf("quotas %+v", f.quotas)
			}
			if f.dirs[dir][attrRequest] != "pvc-1" || f.dirs[dir][attrSize] != "100" {
				t.Fatalf("attrs %+v", f.dirs[dir])
			}
			for _, e := range f.exports {
				if !slices.Equal(e.ReadOnlyClients, []string{NoAccessClient}) || len(e.Clients) != 0 {
					t.Fatalf("export %+v", e)
				}
			}
		}},
		{name: "retry", prepare: func(c *Controller, f *fakeArray) { mustCreate(t, c, req("pvc-1", 100)) }, req: req("pvc-1", 100),
			check: func(t *testing.T, f *fakeArray, v *backend.Volume) {
				if len(f.exports) != 1 {
					t.Fatalf("%d exports after a retry", len(f.exports))
				}
			}},
		{name: "same name other size", prepare: func(c *Controller, f *fakeArray) { mustCreate(t, c, req("pvc-1", 100)) }, req: req("pvc-1", 200), want: backend.AlreadyExists},
		{name: "same name other parameters", prepare: func(c *Controller, f *fakeArray) { mustCreate(t, c, req("pvc-1", 100)) },
			req: withParams(req("pvc-1", 100), ParamRootClientEnabled, "true"), want: backend.AlreadyExists},
		{name: "older volume without a record, retried", prepare: func(c *Controller, f *fakeArray) { mustCreate(t, c, req("pvc-1", 100)); dropRecord(f, "pvc-1") },
			req: withParams(req("pvc-1", 50), ParamRootClientEnabled, "true"), check: func(t *testing.T, f *fakeArray, v *backend.Volume) {
				if v.CapacityBytes != 100 {
					t.Fatalf("older volume reported with %d bytes", v.CapacityBytes)
				}
			}},
		{name: "older volume without a record, other size", prepare: func(c *Controller, f *fakeArray) { mustCreate(t, c, req("pvc-1", 100)); dropRecord(f, "pvc-1") },
			req: req("pvc-1", 200), want: backend.AlreadyExists},
		{name: "bad rootClientEnabled", req: &backend.VolumeRequest{Name: "x", Tenant: "shop", RequiredBytes: 1, Secrets: goodSecrets,
			Parameters: map[string]string{ParamRootClientEnabled: "maybe"}}, want: backend.InvalidArgument},
		{name: "missing source snapshot", req: &backend.VolumeRequest{Name: "x", Tenant: "shop", RequiredBytes: 1, Secrets: goodSecrets,
			SourceSnapshot: &volid.Snapshot{Volume: volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("a")}, SnapHash: volid.Hash("s")}}, want: backend.NotFound},
		{name: "missing source volume", req: &backend.VolumeRequest{Name: "x", Tenant: "shop", RequiredBytes: 1, Secrets: goodSecrets,
			SourceVolume: &volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("a")}}, want: backend.NotFound},
		{name: "no size uses the default", req: req("pvc-0", 0), check: func(t *testing.T, f *fakeArray, v *backend.Volume) {
			if v.CapacityBytes != DefaultVolumeSize {
				t.Fatalf("size %d", v.CapacityBytes)
			}
		}},
		{name: "array down", prepare: func(c *Controller, f *fakeArray) {
			f.fail = backend.Errorf(backend.Unavailable, "down")
		}, req: req("pvc-1", 1), want: backend.Unavailable},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			c, f, _ := testController(t)
			if tc.prepare != nil {
				tc.prepare(c, f)
			}
			v, err := c.CreateVolume(context.Background(), tc.req)
			if tc.want != backend.Internal {
				if backend.CodeOf(err) != tc.want {
					t.Fatalf("error %v, want code %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, f, v)
			}
		})
	}
}

func withParams(r *backend.VolumeRequest, kv ...string) *backend.VolumeRequest {
	r.Parameters = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Parameters[kv[i]] = kv[i+1]
	}
	return r
}

// dropRecord makes a volume look as an older driver left it: no request record attribute.
func dropRecord(f *fakeArray, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.dirs["/ifs/data/sh/shop/csi-vol-"+volid.Hash(name)], attrRecord)
}

func mustCreate(t *testing.T, c *Controller, r *backend.VolumeRequest) *backend.Volume {
	t.Helper()
	v, err := c.CreateVolume(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCloneFromSnapshotAndVolume(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	src := mustCreate(t, c, req("src", 100))
	f.files[src.Context[CtxExportPath]+"/a"] = "v1"
	s, err := c.CreateSnapshot(ctx, src.ID, "snap", nil, goodSecrets)
	if err != nil || s.SizeBytes != 100 {
		t.Fatalf("snapshot %+v %v", s, err)
	}
	f.files[src.Context[CtxExportPath]+"/a"] = "v2"
	r := req("from-snap", 50) // smaller than the source: grows to the source size
	r.SourceSnapshot = &s.ID
	v := mustCreate(t, c, r)
	if f.files[v.Context[CtxExportPath]+"/a"] != "v1" || v.CapacityBytes != 100 || f.dirs[v.Context[CtxExportPath]][attrCopied] != "true" {
		t.Fatalf("clone from snapshot: %+v files %v", v, f.files)
	}
	r2 := req("from-vol", 100)
	r2.SourceVolume = &src.ID
	v2 := mustCreate(t, c, r2)
	if f.files[v2.Context[CtxExportPath]+"/a"] != "v2" {
		t.Fatalf("clone from volume: %v", f.files)
	}
	r3 := req("too-small", 50)
	r3.LimitBytes = 60
	r3.SourceVolume = &src.ID
	if _, err := c.CreateVolume(ctx, r3); backend.CodeOf(err) != backend.OutOfRange {
		t.Fatalf("clone over limit: %v", err)
	}
	other := mustCreate(t, c, req("other", 10))
	if _, err := c.CreateSnapshot(ctx, other.ID, "snap", nil, goodSecrets); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("snapshot name reused for another volume: %v", err)
	}
	l, err := c.ListSnapshots(ctx, nil)
	if err != nil || len(l) != 1 || l[0].ID != s.ID {
		t.Fatalf("ListSnapshots %v %v", l, err)
	}
}

func TestDeleteVolumeOrderAndIdempotency(t *testing.T) {
	c, f, _ := testController(t)
	v := mustCreate(t, c, req("pvc-d", 10))
	f.calls = nil
	if err := c.DeleteVolume(context.Background(), v.ID, goodSecrets); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, call := range f.calls {
		for _, op := range []string{"DeleteExport", "DeleteDirQuota", "RemoveAll"} {
			if strings.HasPrefix(call, op) {
				order = append(order, op)
			}
		}
	}
	// The export and the quota go at once (removeVolume), so either may be first; the
	// directory goes only after both. A plain volume's directory exists with its record:
	// no clone can have left a temporary directory (a retried delete, without the
	// directory, looks: below).
	if len(order) != 3 || order[2] != "RemoveAll" ||
		!slices.Contains(order[:2], "DeleteExport") || !slices.Contains(order[:2], "DeleteDirQuota") {
		t.Fatalf("delete order %v: the export and the quota must both go before the directory", order)
	}
	if len(f.exports) != 0 || f.quotas[v.Context[CtxExportPath]] != nil {
		t.Fatal("orphans left")
	}
	if err := c.DeleteVolume(context.Background(), v.ID, goodSecrets); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestPublishNeverLeavesExportOpen(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	v := mustCreate(t, c, &backend.VolumeRequest{Name: "p", Tenant: "shop", RequiredBytes: 1, Secrets: goodSecrets,
		Parameters: map[string]string{ParamRootClientEnabled: "true"}})
	n1, n2 := backend.Node{Name: "a", Address: "10.0.0.1"}, backend.Node{Name: "b", Address: "10.0.0.2"}
	rw, ro := backend.PublishAccess{}, backend.PublishAccess{ReadOnly: true}
	steps := []struct {
		name     string
		run      func() error
		want     backend.Code
		clients  []string
		root     []string
		readOnly []string
	}{
		{"publish rw", func() error { _, err := c.PublishVolume(ctx, v.ID, n1, rw, v.Context, nil); return err }, backend.Internal,
			[]string{"10.0.0.1"}, []string{"10.0.0.1"}, []string{NoAccessClient}},
		{"publish rw again", func() error { _, err := c.PublishVolume(ctx, v.ID, n1, rw, v.Context, nil); return err }, backend.Internal,
			[]string{"10.0.0.1"}, []string{"10.0.0.1"}, []string{NoAccessClient}},
		{"publish ro", func() error { _, err := c.PublishVolume(ctx, v.ID, n2, ro, v.Context, nil); return err }, backend.Internal,
			[]string{"10.0.0.1"}, []string{"10.0.0.1"}, []string{NoAccessClient, "10.0.0.2"}},
		{"conflicting mode", func() error { _, err := c.PublishVolume(ctx, v.ID, n1, ro, v.Context, nil); return err }, backend.AlreadyExists,
			[]string{"10.0.0.1"}, []string{"10.0.0.1"}, []string{NoAccessClient, "10.0.0.2"}},
		{"unpublish rw", func() error { return c.UnpublishVolume(ctx, v.ID, n1, nil) }, backend.Internal,
			[]string{}, []string{}, []string{NoAccessClient, "10.0.0.2"}},
		{"unpublish all", func() error { return c.UnpublishVolume(ctx, v.ID, backend.Node{}, nil) }, backend.Internal,
			[]string{}, []string{}, []string{NoAccessClient}},
		{"unpublish again", func() error { return c.UnpublishVolume(ctx, v.ID, n1, nil) }, backend.Internal,
			[]string{}, []string{}, []string{NoAccessClient}},
		{"placeholder address", func() error {
			_, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "x", Address: NoAccessClient}, rw, v.Context, nil)
			return err
		}, backend.InvalidArgument, []string{}, []string{}, []string{NoAccessClient}},
	}
	for _, s := range steps {
		err := s.run()
		if s.want == backend.Internal && err != nil || s.want != backend.Internal && backend.CodeOf(err) != s.want {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
		for _, e := range f.exports {
			if !slices.Equal(nonNil(e.Clients), s.clients) || !slices.Equal(nonNil(e.RootClients), s.root) || !slices.Equal(e.ReadOnlyClients, s.readOnly) {
				t.Fatalf("%s: export %+v", s.name, e)
			}
		}
	}
	missing := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("nope")}
	if _, err := c.PublishVolume(ctx, missing, n1, rw, nil, nil); !backend.IsNotFound(err) {
		t.Fatalf("publish of a missing volume: %v", err)
	}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func TestExpandVolume(t *testing.T) {
	c, f, _ := testController(t)
	v := mustCreate(t, c, req("e", 10))
	size, node, err := c.ExpandVolume(context.Background(), v.ID, 30, 0, goodSecrets)
	if err != nil || size != 30 || node || f.quotas[v.Context[CtxExportPath]].Hard != 30 {
		t.Fatalf("expand: %d %v %v", size, node, err)
	}
	missing := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("nope")}
	if _, _, err := c.ExpandVolume(context.Background(), missing, 30, 0, goodSecrets); !backend.IsNotFound(err) {
		t.Fatalf("expand missing: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "creds")
	if err := os.WriteFile(file, []byte("username: fileuser\npassword: \"filepw\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noPass := filepath.Join(dir, "nopass")
	if err := os.WriteFile(noPass, []byte("username: u\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name, file string
		secrets    map[string]string
		wantUser   string
		wantErr    string
	}{
		{name: "secrets win", file: file, secrets: goodSecrets, wantUser: "admin"},
		{name: "file", file: file, wantUser: "fileuser"},
		{name: "secret without password", file: file, secrets: map[string]string{SecretUsername: "a"}, wantErr: `"password"`},
		{name: "secret without username", secrets: map[string]string{SecretPassword: "a"}, wantErr: `"username"`},
		{name: "file without password", file: noPass, wantErr: `"password"`},
		{name: "nothing", wantErr: "no credentials"},
		{name: "unreadable file", file: filepath.Join(dir, "missing"), wantErr: "credentialsFile"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := newConnector(&Config{Endpoint: "https://a", CredentialsFile: tc.file})
			if err != nil {
				t.Fatal(err)
			}
			cr, err := conn.credentials(tc.secrets)
			if tc.wantErr != "" {
				if backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want InvalidArgument mentioning %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || cr.user != tc.wantUser {
				t.Fatalf("credentials %q %v", cr.user, err)
			}
		})
	}
}

func TestLazyConnectAndReconnect(t *testing.T) {
	c, f, opens := testController(t)
	if *opens != 0 {
		t.Fatal("NewController contacted the array")
	}
	fail := true
	c.conn.open = func(ctx context.Context, cr credentials) (array, error) {
		*opens++
		if fail {
			return nil, backend.Errorf(backend.Unavailable, "isilon https://array:8080: connect: refused")
		}
		return f, nil
	}
	if _, err := c.CreateVolume(context.Background(), req("a", 1)); backend.CodeOf(err) != backend.Unavailable {
		t.Fatalf("first call with the array down: %v", err)
	}
	fail = false
	mustCreate(t, c, req("a", 1))
	mustCreate(t, c, req("b", 1))
	if *opens != 2 {
		t.Fatalf("%d connects, want 2 (one failed, one cached)", *opens)
	}
	f.fail = backend.Errorf(backend.Unavailable, "timeout")
	if _, err := c.CreateVolume(context.Background(), req("c", 1)); backend.CodeOf(err) != backend.Unavailable {
		t.Fatal(err)
	}
	f.fail = nil
	mustCreate(t, c, req("c", 1))
	if *opens != 3 {
		t.Fatalf("%d connects, want a reconnect after the failure", *opens)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	testCases := []struct {
		name     string
		err      error
		want     backend.Code
		contains []string
	}{
		{"404", &api.JSONError{StatusCode: 404, Err: []api.Error{{Code: "AEC_NOT_FOUND", Message: "gone"}}}, backend.NotFound, []string{"gone"}},
		{"401", &api.JSONError{StatusCode: 401, Err: []api.Error{{Code: "AEC_UNAUTHORIZED", Message: "bad"}}}, backend.InvalidArgument, []string{"check credentials", "bad"}},
		{"403", &api.JSONError{StatusCode: 403, Err: []api.Error{{Message: "no privilege"}}}, backend.InvalidArgument, []string{"check credentials"}},
		// OneFS's 409 is also a transient conflict: retry, never "already exists".
		{"409", &api.JSONError{StatusCode: 409, Err: []api.Error{{Code: "AEC_CONFLICT", Message: "The directory 'x' is not empty."}}}, backend.Unavailable, []string{"retry", "not empty"}},
		// OneFS's 403 for an object in the way is not a credentials problem.
		{"403 object", &api.JSONError{StatusCode: 403, Err: []api.Error{{Code: "AEC_FORBIDDEN", Message: "The destination '/namespace/ifs/x' exists."}}}, backend.FailedPrecondition, []string{"exists"}},
		{"503", &api.JSONError{StatusCode: 503, Err: []api.Error{{Message: "busy"}}}, backend.Unavailable, []string{"https://array:8080", "busy"}},
		{"html 502", &api.HTMLError{StatusCode: 502, Message: "Bad Gateway"}, backend.Unavailable, []string{"Bad Gateway"}},
		{"session relogin", errors.New("authentication failure due to: authentication failed. unable to login"), backend.InvalidArgument, []string{"check credentials"}},
		{"timeout", &url.Error{Op: "Get", URL: "https://array:8080/x", Err: timeoutErr{}}, backend.Unavailable, []string{"https://array:8080", "did not answer"}},
		{"refused", &url.Error{Op: "Get", URL: "https://array:8080/x", Err: errors.New("connection refused")}, backend.Unavailable, []string{"cannot reach"}},
		{"deadline", context.DeadlineExceeded, backend.Unavailable, nil},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			err := classify(tc.err, "https://array:8080", "op", time.Second)
			if backend.CodeOf(err) != tc.want {
				t.Fatalf("code %v, want %v (%v)", backend.CodeOf(err), tc.want, err)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("%q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestListVolumesAndCapacity(t *testing.T) {
	c, _, _ := testController(t)
	ctx := context.Background()
	mustCreate(t, c, req("a", 5))
	r := req("b", 7)
	r.Tenant = "other"
	mustCreate(t, c, r)
	all, err := c.ListVolumes(ctx, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("all: %v %v", all, err)
	}
	one, err := c.ListVolumes(ctx, "other")
	if err != nil || len(one) != 1 || one[0].CapacityBytes != 7 {
		t.Fatalf("tenant: %v %v", one, err)
	}
	if avail, err := c.Capacity(ctx, nil); err != nil || avail != 1<<40 {
		t.Fatalf("capacity %d %v", avail, err)
	}
}

// TestAttrNames: the driver names its attributes as OneFS stores x-isi-ifs-attr-* headers
// (upper case, '-' to '_'), and reads any case or separator back to that form.
func TestAttrNames(t *testing.T) {
	testCases := []struct{ stored, canonical string }{
		{"SHIPHOLD_SIZE", attrSize},
		{"shiphold.size", attrSize}, // written by an older driver
		{"Shiphold-Size", attrSize}, // an array that keeps the header's case
		{"shiphold_request", attrRequest},
	}
	for _, tc := range testCases {
		if got := canonicalAttr(tc.stored); got != tc.canonical {
			t.Errorf("canonicalAttr(%q) = %q, want %q", tc.stored, got, tc.canonical)
		}
	}
	for _, a := range []string{attrRequest, attrSize, attrSource, attrCopied, attrRecord} {
		h := attrHeader(a)
		if strings.ContainsAny(h, "._ABCDEFGHIJKLMNOPQRSTUVWXYZ") || canonicalAttr(h) != a {
			t.Errorf("header x-isi-ifs-attr-%s would not be stored as %s", h, a)
		}
	}
}

// TestCloneWaitsForItsCopy: a clone's copy runs in the background; a request that ends
// first answers Pending and leaves no volume directory, a delete meanwhile is refused,
// and a retry after the copy renames the checked copy into place.
func TestCloneWaitsForItsCopy(t *testing.T) {
	c, f, _ := testController(t)
	src := mustCreate(t, c, req("src", 100))
	srcDir := src.Context[CtxExportPath]
	f.files[srcDir+"/a"] = "data-a"
	f.dirs[srcDir+"/sub"] = map[string]string{}
	f.files[srcDir+"/sub/b"] = "data-b"
	gate := make(chan struct{})
	f.copyGate = gate
	clone := req("clone", 100)
	clone.SourceVolume = &src.ID
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := c.CreateVolume(ctx, clone)
	cancel()
	if backend.CodeOf(err) != backend.Pending {
		t.Fatalf("clone while copying: %v, want Pending", err)
	}
	id := clone.ID("isi", "")
	z, dir, _ := c.place(id)
	tmp := cloneDir(z, id)
	if _, ok := f.dirs[dir]; ok {
		t.Fatal("the volume directory exists before its copy completed")
	}
	if err := c.DeleteVolume(context.Background(), id, goodSecrets); backend.CodeOf(err) != backend.Pending {
		t.Fatalf("delete during the copy: %v, want Pending", err)
	}
	close(gate)
	v, err := c.CreateVolume(context.Background(), clone)
	if err != nil {
		t.Fatal(err)
	}
	if f.files[dir+"/a"] != "data-a" || f.files[dir+"/sub/b"] != "data-b" || f.dirs[dir][attrCopied] != "true" {
		t.Fatalf("clone content %v attrs %v", f.files, f.dirs[dir])
	}
	if _, ok := f.dirs[tmp]; ok {
		t.Fatal("temporary directory left")
	}
	if _, ok := f.snaps[cloneSnapshotName(id)]; ok {
		t.Fatal("temporary snapshot left")
	}
	if v.CapacityBytes != 100 || f.quotas[dir] == nil {
		t.Fatalf("clone %+v quota %v", v, f.quotas[dir])
	}
}

// A plugin killed after a volume clone's copy was renamed into place, and before its
// temporary snapshot of the source was dropped, left that snapshot for the clone's whole
// life (pinning the source's changed blocks on the array): the kill -9 storm found one. The
// retry that finds the finished clone drops it.
func TestCloneRetryDropsATemporarySnapshotLeftByACrash(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	src := mustCreate(t, c, req("src", 100))
	f.files[src.Context[CtxExportPath]+"/a"] = "v1"
	r := req("from-vol", 100)
	r.SourceVolume = &src.ID
	v := mustCreate(t, c, r)
	// The crash: the copy is in place, its temporary snapshot still there.
	if _, err := f.CreateSnapshot(ctx, cloneSnapshotName(v.ID), src.Context[CtxExportPath]); err != nil {
		t.Fatal(err)
	}
	again, err := c.CreateVolume(ctx, r)
	if err != nil || again.ID != v.ID {
		t.Fatalf("retried clone: %+v %v", again, err)
	}
	if s, _ := f.Snapshot(ctx, cloneSnapshotName(v.ID)); s != nil {
		t.Fatalf("temporary snapshot %s stays after the retry found the finished clone", s.Name)
	}
}
