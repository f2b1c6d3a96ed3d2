package onefssim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Tests for the places where the simulator once answered differently from OneFS. Each
// also compares the shape of its answers (field names, nesting, JSON types) with the
// bodies recorded from Dell's csi-powerscale tests in testdata/onefs-responses.

// jsonType names the JSON type of a decoded value; null matches any type (OneFS fields
// such as expires or resume are null or a value).
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// shape maps every key path of v ("a.b", array elements as "[]") to its JSON type.
func shape(prefix string, v any, out map[string]string) {
	if prefix != "" {
		if old, ok := out[prefix]; !ok || old == "null" {
			out[prefix] = jsonType(v)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		for k, vv := range x {
			shape(prefix+"."+k, vv, out)
		}
	case []any:
		for _, vv := range x {
			shape(prefix+"[]", vv, out)
		}
	}
}

// sameShape fails the test if body lacks a key of the recorded file or has it with
// another JSON type.
func sameShape(t *testing.T, recorded string, body []byte) {
	t.Helper()
	rec, err := os.ReadFile(filepath.Join("testdata/onefs-responses", recorded))
	if err != nil {
		t.Fatal(err)
	}
	compareShape(t, recorded, rec, body)
}

// inEmptyArray reports whether key k lies inside an array that is empty in shape ss.
func inEmptyArray(k string, ss map[string]string) bool {
	for i := 0; ; {
		j := strings.Index(k[i:], "[]")
		if j < 0 {
			return false
		}
		arr := k[:i+j]
		if _, ok := ss[arr+"[]"]; ss[arr] == "array" && !ok {
			return true
		}
		i += j + 2
	}
}

func sameShapeInline(t *testing.T, recorded string, body []byte) {
	t.Helper()
	compareShape(t, "described shape", []byte(recorded), body)
}

func compareShape(t *testing.T, name string, rec, body []byte) {
	t.Helper()
	recorded := name
	var rv, ov any
	if err := json.Unmarshal(rec, &rv); err != nil {
		t.Fatalf("%s: %v", recorded, err)
	}
	if err := json.Unmarshal(body, &ov); err != nil {
		t.Fatalf("simulator body for %s is not JSON: %v: %s", recorded, err, body)
	}
	rs, ss := map[string]string{}, map[string]string{}
	shape("", rv, rs)
	shape("", ov, ss)
	for k, typ := range rs {
		got, ok := ss[k]
		switch {
		case !ok && inEmptyArray(k, ss):
			// An empty array of ours shows no element type to compare.
		case !ok:
			t.Errorf("%s: key %s missing from the simulator's answer %s", recorded, k, body)
		case typ != got && typ != "null" && got != "null":
			t.Errorf("%s: key %s is %s in the recording, %s in the simulator", recorded, k, typ, got)
		}
	}
}

// metadataShape is the body of GET ?metadata as the recorded README describes it (the
// csi-powerscale tests answer it inline): an attrs array of name/value/namespace.
const metadataShape = `{"attrs":[{"name":"type","value":"container","namespace":null},{"name":"X","value":"y","namespace":"user"}]}`

func TestAttrNamesFromHeadersAreUpperCased(t *testing.T) {
	s, u := newSim(t, nil)
	code, _, body := rawDo(t, "PUT", u+"/namespace/ifs/data/csi/v1", map[string]string{
		"x-isi-ifs-target-type":           "container",
		"x-isi-ifs-attr-owner-id":         "abc",
		"x-isi-ifs-attr-shiphold.request": "lost", // Apache drops header names with '.'
		"X-Isi-Ifs-Attr-MiXed":            "m",
	}, "")
	if code != 200 {
		t.Fatalf("mkdir %d %s", code, body)
	}
	// Names sent in a JSON body are stored as written.
	if code, _, body := rawDo(t, "PUT", u+"/namespace/ifs/data/csi/v1?metadata", nil,
		`{"action":"update","attrs":[{"name":"json.Name","value":"j","op":"update"}]}`); code != 200 {
		t.Fatalf("metadata put %d %s", code, body)
	}
	code, _, body = rawDo(t, "GET", u+"/namespace/ifs/data/csi/v1?metadata", nil, "")
	if code != 200 {
		t.Fatalf("metadata %d %s", code, body)
	}
	sameShapeInline(t, metadataShape, body)
	var resp struct {
		Attrs []struct {
			Name      string  `json:"name"`
			Value     any     `json:"value"`
			Namespace *string `json:"namespace"`
		} `json:"attrs"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	user := map[string]string{}
	for _, a := range resp.Attrs {
		if a.Namespace != nil && *a.Namespace == "user" {
			user[a.Name] = fmt.Sprint(a.Value)
		}
	}
	want := map[string]string{"OWNER_ID": "abc", "MIXED": "m", "json.Name": "j"}
	if fmt.Sprint(user) != fmt.Sprint(want) {
		t.Fatalf("user attributes %v, want %v", user, want)
	}
	// A snapshot keeps the attributes the directory had (OneFS keeps extended attributes).
	if code, _, body := rawDo(t, "POST", u+"/platform/1/snapshot/snapshots", nil, `{"name":"s1","path":"/ifs/data/csi/v1"}`); code != 201 {
		t.Fatalf("snapshot %d %s", code, body)
	}
	rawDo(t, "PUT", u+"/namespace/ifs/data/csi/v1?metadata", nil, `{"action":"update","attrs":[{"name":"OWNER_ID","value":"later"}]}`)
	_, _, body = rawDo(t, "GET", u+"/namespace/ifs/.snapshot/s1/data/csi/v1?metadata", nil, "")
	if !strings.Contains(string(body), `"value":"abc"`) || strings.Contains(string(body), "later") {
		t.Fatalf("snapshot view attributes %s, want the ones at snapshot time", body)
	}
	_ = s
}

func TestSnapshotSizeIsItsOwnDelta(t *testing.T) {
	s, u := newSim(t, nil)
	dir := filepath.Join(s.Root(), "data/csi/vol")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	if err := os.WriteFile(filepath.Join(dir, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, body := rawDo(t, "POST", u+"/platform/1/snapshot/snapshots", nil, `{"name":"snap-a","path":"/ifs/data/csi/vol"}`)
	if code != 201 {
		t.Fatalf("create %d %s", code, body)
	}
	sameShape(t, "snapshot_create_snapshot.txt", body)
	size := func() float64 {
		_, _, body := rawDo(t, "GET", u+"/platform/1/snapshot/snapshots/snap-a", nil, "")
		sameShape(t, "snapshot_get_existent_snapshot_2.txt", body)
		var r struct {
			Snapshots []struct {
				Size float64 `json:"size"`
			} `json:"snapshots"`
		}
		if err := json.Unmarshal(body, &r); err != nil || len(r.Snapshots) != 1 {
			t.Fatalf("get %s %v", body, err)
		}
		return r.Snapshots[0].Size
	}
	if got := size(); got != snapshotBase {
		t.Fatalf("fresh snapshot of 1 MiB of data has size %v, want %d (its own metadata, not the data)", got, snapshotBase)
	}
	// Overwriting the file after the snapshot makes the snapshot hold the old blocks.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, "big"), data[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != snapshotBase+1<<20 {
		t.Fatalf("after overwrite size %v, want %d", got, snapshotBase+1<<20)
	}
}

func TestDuplicateExportRefused(t *testing.T) {
	s, u := newSim(t, nil)
	_ = os.MkdirAll(filepath.Join(s.Root(), "data/csi/e"), 0o777)
	post := func(body, query string) (int, []byte) {
		code, _, b := rawDo(t, "POST", u+"/platform/2/protocols/nfs/exports"+query, nil, body)
		return code, b
	}
	if code, b := post(`{"paths":["/ifs/data/csi/e"],"read_only_clients":["192.0.2.1"]}`, ""); code != 201 {
		t.Fatalf("first %d %s", code, b)
	}
	code, b := post(`{"paths":["/ifs/data/csi/e"],"read_only_clients":["192.0.2.1"],"clients":["10.0.0.1"]}`, "")
	if code != 409 || !strings.Contains(string(b), `"AEC_CONFLICT"`) || !strings.Contains(string(b), "conflict on '/ifs/data/csi/e'") {
		t.Fatalf("second export with a shared client: %d %s, want 409 AEC_CONFLICT", code, b)
	}
	sameShape(t, "export_get_exports_with_invalid_resume.txt", b) // {"errors":[{code,message}]}
	// Other clients on the same path are another rule, as on OneFS.
	if code, b := post(`{"paths":["/ifs/data/csi/e"],"clients":["10.0.0.9"]}`, ""); code != 201 {
		t.Fatalf("export for other clients %d %s", code, b)
	}
	// Open to all twice conflicts; ignore_conflicts lets it through and marks it.
	_ = os.MkdirAll(filepath.Join(s.Root(), "data/csi/o"), 0o777)
	post(`{"paths":["/ifs/data/csi/o"]}`, "")
	if code, _ := post(`{"paths":["/ifs/data/csi/o"]}`, ""); code != 409 {
		t.Fatalf("two open exports of one path: %d, want 409", code)
	}
	if code, b := post(`{"paths":["/ifs/data/csi/o"]}`, "?ignore_conflicts=true"); code != 201 {
		t.Fatalf("ignore_conflicts %d %s", code, b)
	}
	_, _, b = rawDo(t, "GET", u+"/platform/2/protocols/nfs/exports?path=/ifs/data/csi/o", nil, "")
	if strings.Count(string(b), `"conflicting_paths":["/ifs/data/csi/o"]`) != 2 {
		t.Fatalf("conflicting_paths not reported: %s", b)
	}
	// A change that makes an export clash is refused too.
	code, _, b = rawDo(t, "PUT", u+"/platform/2/protocols/nfs/exports/2", nil, `{"clients":["192.0.2.1"]}`)
	if code != 409 {
		t.Fatalf("update into a conflict %d %s", code, b)
	}
}

func TestNamespaceConflictCodes(t *testing.T) {
	s, u := newSim(t, nil)
	ns := u + "/namespace/ifs/data/csi/"
	mk := map[string]string{"x-isi-ifs-target-type": "container"}
	rawDo(t, "PUT", ns+"d", mk, "")
	// An existing container is AEC_FORBIDDEN on OneFS, not a 409.
	code, _, b := rawDo(t, "PUT", ns+"d?overwrite=false", mk, "")
	if code != 403 || !strings.Contains(string(b), "container already exists") {
		t.Fatalf("mkdir over an existing dir %d %s", code, b)
	}
	sameShape(t, "volume_get_non_existent_volume.txt", b)
	_ = os.WriteFile(filepath.Join(s.Root(), "data/csi/d/f"), []byte("x"), 0o644)
	if code, _, b := rawDo(t, "DELETE", ns+"d", nil, ""); code != 403 || !strings.Contains(string(b), "is not empty") {
		t.Fatalf("delete of a non-empty dir without recursive %d %s", code, b)
	}
	if code, _, b := rawDo(t, "DELETE", ns+"never", nil, ""); code != 204 {
		t.Fatalf("delete of a missing object %d %s, want 204 as on OneFS", code, b)
	}
	// Copy: an existing target is merged into only when asked; existing files are
	// reported in copy_errors unless overwrite=true. A clean copy answers with no body.
	src := map[string]string{"x-isi-ifs-copy-source": "/namespace/ifs/data/csi/d"}
	if code, _, b := rawDo(t, "PUT", ns+"c", src, ""); code != 200 || len(b) != 0 {
		t.Fatalf("copy %d %q", code, b)
	}
	code, _, b = rawDo(t, "PUT", ns+"c", src, "")
	if code != 200 || !strings.Contains(string(b), `"success":false`) || !strings.Contains(string(b), "exists") {
		t.Fatalf("copy onto an existing target %d %s", code, b)
	}
	if code, _, b := rawDo(t, "PUT", ns+"c?merge=true", src, ""); !strings.Contains(string(b), `"copy_errors"`) {
		t.Fatalf("merge onto existing files %d %s", code, b)
	}
	if code, _, b := rawDo(t, "PUT", ns+"c?merge=true&overwrite=true", src, ""); code != 200 || len(b) != 0 {
		t.Fatalf("merge+overwrite %d %s", code, b)
	}
	// Move: refuses an existing destination (403), a missing source is 404.
	mv := func(from, to string) (int, string) {
		code, _, b := rawDo(t, "POST", ns+from, map[string]string{"x-isi-ifs-set-location": "/namespace/ifs/data/csi/" + to}, "")
		return code, string(b)
	}
	if code, b := mv("c", "d"); code != 403 || !strings.Contains(b, "exists") {
		t.Fatalf("move onto an existing dir %d %s", code, b)
	}
	if code, b := mv("nope", "x"); code != 404 {
		t.Fatalf("move of a missing source %d %s", code, b)
	}
	rawDo(t, "PUT", ns+"c?metadata", nil, `{"action":"update","attrs":[{"name":"K","value":"v"}]}`)
	if code, b := mv("c", "moved"); code != 204 {
		t.Fatalf("move %d %s", code, b)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "data/csi/moved/f")); err != nil {
		t.Fatalf("moved content: %v", err)
	}
	if _, _, b := rawDo(t, "GET", ns+"moved?metadata", nil, ""); !strings.Contains(string(b), `"K"`) {
		t.Fatalf("attributes did not move with the directory: %s", b)
	}
}

// TestCopyOutlivesItsClient: a slow copy goes on after the client gives up (OneFS keeps
// copying), and a recursive delete racing with it never answers anything but 204 or
// OneFS's 409 "not empty".
func TestCopyOutlivesItsClient(t *testing.T) {
	s, u := newSim(t, func(o *Options) { o.CopyDelay = 20 * time.Millisecond })
	src := filepath.Join(s.Root(), "data/csi/src")
	_ = os.MkdirAll(src, 0o777)
	for i := 0; i < 30; i++ {
		_ = os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), []byte("data"), 0o644)
	}
	c := mustClient(t, u, authBasic)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.CopyVolumeWithIsiPath(ctx, "/ifs/data/csi", "src", "dst"); err == nil {
		t.Fatal("a 600 ms copy finished within 200 ms")
	}
	s.WaitCopies()
	ents, _ := os.ReadDir(filepath.Join(s.Root(), "data/csi/dst"))
	if len(ents) != 30 {
		t.Fatalf("copy stopped with its client: %d of 30 files", len(ents))
	}
	// Delete while another copy writes into the same directory.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.CopyVolumeWithIsiPath(ctx, "/ifs/data/csi", "src", "dst2")
	}()
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 50; i++ {
		code, _, b := rawDo(t, "DELETE", u+"/namespace/ifs/data/csi/dst2?recursive=true", nil, "")
		if code != 204 && !(code == 409 && strings.Contains(string(b), "AEC_CONFLICT")) {
			t.Fatalf("delete racing a copy %d %s", code, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.WaitCopies()
}

func TestDefaultPageSizes(t *testing.T) {
	s, u := newSim(t, func(o *Options) { o.PageSize = 2 })
	base := filepath.Join(s.Root(), "data/csi/t")
	for i := 0; i < 5; i++ {
		_ = os.MkdirAll(filepath.Join(base, fmt.Sprintf("d%d", i)), 0o777)
	}
	_ = os.WriteFile(filepath.Join(base, "a-file"), nil, 0o644)
	_ = os.WriteFile(filepath.Join(base, "d1-file"), nil, 0o644)
	list := func(query string) ([]string, string) {
		_, _, b := rawDo(t, "GET", u+"/namespace/ifs/data/csi/t?"+query, nil, "")
		var r struct {
			Children []struct {
				Name string `json:"name"`
			} `json:"children"`
			Resume string `json:"resume"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %s", query, b)
		}
		var names []string
		for _, c := range r.Children {
			names = append(names, c.Name)
		}
		switch {
		case !strings.Contains(query, "detail"): // names only: nothing to compare
		case r.Resume != "":
			sameShape(t, "namespace_list_filesystems_with_resume.txt", b)
		default:
			sameShape(t, "namespace_list_filesystems_page2.txt", b)
		}
		return names, r.Resume
	}
	// Without a limit the listing is paged; the filter must come with every page.
	var dirs []string
	names, res := list("type=container&detail=default")
	dirs = append(dirs, names...)
	for res != "" {
		names, res = list("type=container&detail=default&resume=" + url.QueryEscape(res))
		dirs = append(dirs, names...)
	}
	sort.Strings(dirs)
	if strings.Join(dirs, ",") != "d0,d1,d2,d3,d4" {
		t.Fatalf("paged directories %v", dirs)
	}
	// The token carries no filter: a page asked without it lists files too.
	_, res = list("type=container")
	names, _ = list("resume=" + url.QueryEscape(res))
	var withFilter []string
	_, res = list("type=container")
	withFilter, _ = list("type=container&resume=" + url.QueryEscape(res))
	if fmt.Sprint(names) == fmt.Sprint(withFilter) {
		t.Fatalf("a resumed page without type=container listed %v, the same as with it", names)
	}
	// PAPI lists page too; their tokens carry the query, so a resume sends only the token.
	c := mustClient(t, u, authBasic)
	ctx := ctxT(t)
	for i := 0; i < 5; i++ {
		p := fmt.Sprintf("/ifs/data/csi/t/d%d", i)
		if _, err := c.ExportWithZoneAndPath(ctx, p, "System", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateQuotaWithPath(ctx, p, true, 1<<30, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateSnapshotWithPath(ctx, p, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	code, _, b := rawDo(t, "GET", u+"/platform/2/protocols/nfs/exports", nil, "")
	if code != 200 || strings.Count(string(b), `"paths"`) != 2 {
		t.Fatalf("exports without a limit: want a page of 2: %s", b)
	}
	sameShape(t, "export_get_exports_with_limit.txt", b)
	var page struct {
		Resume string `json:"resume"`
	}
	_ = json.Unmarshal(b, &page)
	_, _, b = rawDo(t, "GET", u+"/platform/2/protocols/nfs/exports?resume="+url.QueryEscape(page.Resume), nil, "")
	sameShape(t, "export_get_exports_with_resume.txt", b)
	_, _, b = rawDo(t, "GET", u+"/platform/1/quota/quotas", nil, "")
	if strings.Count(string(b), `"thresholds"`) != 2 || !strings.Contains(string(b), `"total":5`) {
		t.Fatalf("quotas without a limit: want a page of 2 of 5: %s", b)
	}
	all, err := c.GetAllQuotas(ctx)
	if err != nil || len(all) != 5 {
		t.Fatalf("goisilon follows quota resume tokens: %d %v", len(all), err)
	}
	_, _, b = rawDo(t, "GET", u+"/platform/1/quota/quotas/"+all[0].ID, nil, "")
	sameShape(t, "quota_get_quota_by_id_8gb.txt", b)
	if snaps, err := c.GetSnapshots(ctx); err != nil || len(snaps) != 5 {
		t.Fatalf("goisilon follows snapshot resume tokens: %d %v", len(snaps), err)
	}
	code, _, b = rawDo(t, "GET", u+"/platform/1/quota/quotas?resume=bogus", nil, "")
	if code != 400 {
		t.Fatalf("bad quota token %d %s", code, b)
	}
	sameShape(t, "export_get_exports_with_invalid_resume.txt", b)
}

// TestInjectedFaults: a fault answers instead of the handler, or after it (the request
// took effect but the client sees an error).
func TestInjectedFaults(t *testing.T) {
	s, u := newSim(t, nil)
	_ = os.MkdirAll(filepath.Join(s.Root(), "data/csi/q"), 0o777)
	s.InjectFault(Fault{Method: "POST", Path: "/platform/1/quota/quotas", Status: 409, Code: "AEC_CONFLICT", Message: "transient"})
	code, _, b := rawDo(t, "POST", u+"/platform/1/quota/quotas", nil, `{"path":"/ifs/data/csi/q","type":"directory"}`)
	if code != 409 || !strings.Contains(string(b), "transient") {
		t.Fatalf("fault %d %s", code, b)
	}
	if _, _, b := rawDo(t, "GET", u+"/platform/1/quota/quotas", nil, ""); !strings.Contains(string(b), `"total":0`) {
		t.Fatalf("a fault before the handler must not create: %s", b)
	}
	s.InjectFault(Fault{Method: "POST", Path: "/platform/1/quota/quotas", Status: 500, Code: "AEC_EXCEPTION", Message: "lost", After: true})
	if code, _, _ := rawDo(t, "POST", u+"/platform/1/quota/quotas", nil, `{"path":"/ifs/data/csi/q","type":"directory"}`); code != 500 {
		t.Fatalf("after-fault %d", code)
	}
	if _, _, b := rawDo(t, "GET", u+"/platform/1/quota/quotas", nil, ""); !strings.Contains(string(b), `"total":1`) {
		t.Fatalf("an After fault must let the request take effect: %s", b)
	}
}
