package isilon

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/akutz/gournal"
	"github.com/dell/goisilon"
	"github.com/dell/goisilon/api"
	apiv1 "github.com/dell/goisilon/api/v1"
	apiv2 "github.com/dell/goisilon/api/v2"

	"github.com/shiphold/shiphold/pkg/backend"
)

// Export is the part of a OneFS NFS export that shiphold manages.
type Export struct {
	ID int
	// Zone is the access zone the export belongs to; every export call names it.
	Zone             string
	Path             string
	Clients          []string
	RootClients      []string
	ReadWriteClients []string
	ReadOnlyClients  []string
	// SquashesRoot is whether the export's map_root in effect (its own, else its zone's
	// default) maps root on clients outside root_clients to nobody.
	SquashesRoot bool
}

// Quota is a OneFS directory quota; Hard is 0 for an accounting quota.
type Quota struct {
	ID   string
	Path string
	Hard int64
}

// IsiSnapshot is a OneFS snapshot.
type IsiSnapshot struct {
	ID      int64
	Name    string
	Path    string
	Created time.Time
	Size    int64
}

// array is what the controller needs from OneFS; papi implements it on goisilon, unit
// tests on a fake. Every method returns classified backend errors; "absent" lookups return
// nil without error.
type array interface {
	Version(ctx context.Context) error
	// Mkdir creates a directory (and its parents) with mode and user attributes; an
	// existing directory is left as is.
	Mkdir(ctx context.Context, dir, mode string, attrs map[string]string) error
	// CreateDir creates a directory (and its parents) with mode and user attributes in one
	// request, and reports false, changing nothing, when it exists already.
	CreateDir(ctx context.Context, dir, mode string, attrs map[string]string) (bool, error)
	// Attrs returns a directory's user attributes; NotFound when it is absent.
	Attrs(ctx context.Context, dir string) (map[string]string, error)
	SetAttrs(ctx context.Context, dir string, attrs map[string]string) error
	// Chmod sets a directory's POSIX mode (octal, "0711").
	Chmod(ctx context.Context, dir, mode string) error
	// RemoveAttrs deletes user attributes (absent ones are fine).
	RemoveAttrs(ctx context.Context, dir string, names []string) error
	// Children lists the names of the subdirectories; NotFound when dir is absent.
	Children(ctx context.Context, dir string) ([]string, error)
	RemoveAll(ctx context.Context, dir string) error
	// Copy copies a directory tree into dst, merging into an existing dst and replacing
	// the files there, so a copy can be redone over a partial one.
	Copy(ctx context.Context, src, dst string) error
	// Move renames src to dst; dst must not exist (FailedPrecondition if it does).
	Move(ctx context.Context, src, dst string) error
	// Tree lists everything below dir: relative path -> file size, -1 for directories.
	Tree(ctx context.Context, dir string) (map[string]int64, error)

	DirQuota(ctx context.Context, dir string) (*Quota, error)
	DirQuotas(ctx context.Context) ([]Quota, error)
	CreateDirQuota(ctx context.Context, dir string, hard int64) error
	SetQuotaHard(ctx context.Context, id string, hard int64) error
	// DeleteDirQuota removes dir's directory quota by its path, in one request (an absent
	// one is fine).
	DeleteDirQuota(ctx context.Context, dir string) error

	// ExportOf finds the export of dir among zone's exports.
	ExportOf(ctx context.Context, zone, dir string) (*Export, error)
	// CreateExport and UpdateExportClients act in e.Zone.
	CreateExport(ctx context.Context, e Export) (int, error)
	UpdateExportClients(ctx context.Context, e Export) error
	// SquashRoot makes the export map root to nobody whatever its zone's default says.
	SquashRoot(ctx context.Context, zone string, id int) error
	DeleteExport(ctx context.Context, zone string, id int) error

	CreateSnapshot(ctx context.Context, name, dir string) (*IsiSnapshot, error)
	// Snapshot returns nil when the snapshot is absent.
	Snapshot(ctx context.Context, name string) (*IsiSnapshot, error)
	Snapshots(ctx context.Context) ([]IsiSnapshot, error)
	DeleteSnapshot(ctx context.Context, id int64) error
	// SnapshotDir is the read-only path of dir inside a snapshot.
	SnapshotDir(snapName, dir string) string

	AvailableBytes(ctx context.Context) (int64, error)
	// ZoneBase is an access zone's base path; NotFound when the array has no such zone.
	ZoneBase(ctx context.Context, zone string) (string, error)
}

// papi implements array with goisilon; what goisilon lacks goes through its generic
// client.API calls.
type papi struct {
	c        *goisilon.Client
	copyC    *goisilon.Client // without the request timeout, for copies
	endpoint string
	timeout  time.Duration
}

const (
	namespacePrefix = "/namespace"
	quotasPath      = "/platform/1/quota/quotas"
	snapshotsPath   = "/platform/1/snapshot/snapshots"
	exportsPath     = "/platform/2/protocols/nfs/exports"
)

func (p *papi) err(err error, format string, args ...any) error {
	return classify(err, p.endpoint, fmt.Sprintf(format, args...), p.timeout)
}

// quiet keeps goisilon from logging the errors it returns: they come back classified and
// the caller decides what to log.
func quiet(ctx context.Context) context.Context {
	return context.WithValue(ctx, gournal.LevelKey(), gournal.FatalLevel)
}

func nsPath(dir string) string { return namespacePrefix + dir }

func (p *papi) Version(ctx context.Context) error {
	ctx = quiet(ctx)
	var resp struct {
		Latest string `json:"latest"`
	}
	if err := p.c.API.Get(ctx, "/platform/latest", "", nil, nil, &resp); err != nil {
		return p.err(err, "version check")
	}
	v, err := strconv.ParseFloat(resp.Latest, 64)
	if err != nil || v < 3 {
		return backend.Errorf(backend.FailedPrecondition, "isilon %s: Platform API version %q is older than OneFS 8.0 (3)", p.endpoint, resp.Latest)
	}
	return nil
}

func (p *papi) Mkdir(ctx context.Context, dir, mode string, attrs map[string]string) error {
	if err := p.mkdir(ctx, dir, mode, attrs, true); err != nil {
		return p.err(err, "create directory %s", dir)
	}
	return nil
}

func (p *papi) CreateDir(ctx context.Context, dir, mode string, attrs map[string]string) (bool, error) {
	err := p.mkdir(ctx, dir, mode, attrs, false)
	if err == nil {
		return true, nil
	}
	// OneFS answers an existing container with 403 AEC_FORBIDDEN "... already exists".
	var je *api.JSONError
	if errors.As(err, &je) && je.StatusCode == 403 && strings.Contains(err.Error(), "already exists") {
		return false, nil
	}
	return false, p.err(err, "create directory %s", dir)
}

// mkdir is one PUT of a container; overwrite false makes an existing one an error.
func (p *papi) mkdir(ctx context.Context, dir, mode string, attrs map[string]string, overwrite bool) error {
	ctx = quiet(ctx)
	headers := map[string]string{"x-isi-ifs-target-type": "container", "x-isi-ifs-access-control": mode}
	for k, v := range attrs {
		headers["x-isi-ifs-attr-"+attrHeader(k)] = v
	}
	params := api.OrderedValues{{[]byte("recursive"), []byte("true")}}
	if !overwrite {
		params = append(params, [][]byte{[]byte("overwrite"), []byte("false")})
	}
	return p.c.API.Put(ctx, nsPath(dir), "", params, headers, nil, nil)
}

type attrsResp struct {
	Attrs []struct {
		Name      string  `json:"name"`
		Value     any     `json:"value"`
		Namespace *string `json:"namespace"`
	} `json:"attrs"`
}

func (p *papi) Attrs(ctx context.Context, dir string) (map[string]string, error) {
	ctx = quiet(ctx)
	var resp attrsResp
	params := api.OrderedValues{{[]byte("metadata")}}
	if err := p.c.API.Get(ctx, nsPath(dir), "", params, nil, &resp); err != nil {
		return nil, p.err(err, "directory %s", dir)
	}
	out := map[string]string{}
	for _, a := range resp.Attrs {
		if a.Namespace != nil && *a.Namespace == "user" {
			out[canonicalAttr(a.Name)] = fmt.Sprint(a.Value)
		}
	}
	return out, nil
}

// OneFS takes x-isi-ifs-attr-<name> headers through Apache's CGI environment: it stores
// <name> upper-cased with '-' as '_', and drops names holding other characters. Names
// set through ?metadata JSON are stored as written. So the driver names its attributes
// in the stored form (SHIPHOLD_SIZE), sends them as headers in the form that maps to it
// (shiphold-size), and reads every name back in canonical form, whatever case or
// separator an array (or an older driver: shiphold.size) used.

// attrHeader is the header suffix OneFS stores as the attribute name canonical.
func attrHeader(canonical string) string {
	return strings.ReplaceAll(strings.ToLower(canonical), "_", "-")
}

// canonicalAttr is an attribute name upper-cased with every other character than a
// letter or digit as '_'.
func canonicalAttr(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func (p *papi) SetAttrs(ctx context.Context, dir string, attrs map[string]string) error {
	ctx = quiet(ctx)
	type attr struct {
		Name  string `json:"name"`
		Value string `json:"value"`
		Op    string `json:"op"`
	}
	body := struct {
		Action string `json:"action"`
		Attrs  []attr `json:"attrs"`
	}{Action: "update"}
	for k, v := range attrs {
		body.Attrs = append(body.Attrs, attr{Name: k, Value: v, Op: "update"})
	}
	params := api.OrderedValues{{[]byte("metadata")}}
	if err := p.c.API.Put(ctx, nsPath(dir), "", params, nil, body, nil); err != nil {
		return p.err(err, "set attributes of %s", dir)
	}
	return nil
}

func (p *papi) Chmod(ctx context.Context, dir, mode string) error {
	ctx = quiet(ctx)
	body := map[string]string{"authoritative": "mode", "mode": mode}
	params := api.OrderedValues{{[]byte("acl")}}
	if err := p.c.API.Put(ctx, nsPath(dir), "", params, nil, body, nil); err != nil {
		return p.err(err, "set mode %s on %s", mode, dir)
	}
	return nil
}

func (p *papi) RemoveAttrs(ctx context.Context, dir string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	ctx = quiet(ctx)
	type attr struct {
		Name string `json:"name"`
		Op   string `json:"op"`
	}
	body := struct {
		Action string `json:"action"`
		Attrs  []attr `json:"attrs"`
	}{Action: "update"}
	for _, n := range names {
		body.Attrs = append(body.Attrs, attr{Name: n, Op: "delete"})
	}
	params := api.OrderedValues{{[]byte("metadata")}}
	if err := p.c.API.Put(ctx, nsPath(dir), "", params, nil, body, nil); err != nil {
		return p.err(err, "remove attributes of %s", dir)
	}
	return nil
}

func (p *papi) Children(ctx context.Context, dir string) ([]string, error) {
	ctx = quiet(ctx)
	var names []string
	resume := ""
	for {
		var resp struct {
			Children []struct {
				Name string `json:"name"`
			} `json:"children"`
			Resume *string `json:"resume"`
		}
		// A namespace resume token holds only the position: the filter goes with every page.
		params := api.OrderedValues{{[]byte("type"), []byte("container")}}
		if resume != "" {
			params = append(params, [][]byte{[]byte("resume"), []byte(resume)})
		}
		if err := p.c.API.Get(ctx, nsPath(dir), "", params, nil, &resp); err != nil {
			return nil, p.err(err, "list %s", dir)
		}
		for _, ch := range resp.Children {
			names = append(names, ch.Name)
		}
		if resp.Resume == nil || *resp.Resume == "" {
			return names, nil
		}
		resume = *resp.Resume
	}
}

func (p *papi) RemoveAll(ctx context.Context, dir string) error {
	ctx = quiet(ctx)
	params := api.OrderedValues{{[]byte("recursive"), []byte("true")}}
	if err := p.c.API.Delete(ctx, nsPath(dir), "", params, nil, nil); err != nil {
		return p.err(err, "delete directory %s", dir)
	}
	return nil
}

func (p *papi) Copy(ctx context.Context, src, dst string) error {
	ctx = quiet(ctx)
	headers := map[string]string{"x-isi-ifs-copy-source": nsPath(src), "x-isi-ifs-mode-mask": "preserve"}
	params := api.OrderedValues{{[]byte("merge"), []byte("true")}, {[]byte("overwrite"), []byte("true")}}
	cl := p.c
	if p.copyC != nil {
		cl = p.copyC
	}
	var resp apiv1.CopyIsiVolumesResp
	if err := cl.API.Put(ctx, nsPath(dst), "", params, headers, nil, &resp); err != nil {
		return p.err(err, "copy %s to %s", src, dst)
	}
	if !resp.Success && len(resp.CopyErrors) > 0 {
		return backend.Errorf(backend.Unavailable, "isilon %s: copy %s to %s: %+v", p.endpoint, src, dst, resp.CopyErrors)
	}
	return nil
}

func (p *papi) Move(ctx context.Context, src, dst string) error {
	ctx = quiet(ctx)
	headers := map[string]string{"x-isi-ifs-set-location": nsPath(dst)}
	if err := p.c.API.Post(ctx, nsPath(src), "", nil, headers, nil, nil); err != nil {
		return p.err(err, "move %s to %s", src, dst)
	}
	return nil
}

func (p *papi) Tree(ctx context.Context, dir string) (map[string]int64, error) {
	ctx = quiet(ctx)
	out := map[string]int64{}
	resume := ""
	for {
		var resp struct {
			Children []struct {
				Name          string `json:"name"`
				ContainerPath string `json:"container_path"`
				Type          string `json:"type"`
				Size          int64  `json:"size"`
			} `json:"children"`
			Resume *string `json:"resume"`
		}
		params := api.OrderedValues{{[]byte("detail"), []byte("size,type,container_path")}, {[]byte("max-depth"), []byte("-1")}}
		if resume != "" {
			params = append(params, [][]byte{[]byte("resume"), []byte(resume)})
		}
		if err := p.c.API.Get(ctx, nsPath(dir), "", params, nil, &resp); err != nil {
			return nil, p.err(err, "list %s", dir)
		}
		for _, ch := range resp.Children {
			rel := strings.TrimPrefix(path.Join(ch.ContainerPath, ch.Name), dir+"/")
			if ch.Type == "container" {
				out[rel] = -1
			} else {
				out[rel] = ch.Size
			}
		}
		if resp.Resume == nil || *resp.Resume == "" {
			return out, nil
		}
		resume = *resp.Resume
	}
}

type quotaJSON struct {
	ID         string `json:"id"`
	Path       string `json:"path"`
	Type       string `json:"type"`
	Thresholds struct {
		Hard *int64 `json:"hard"`
	} `json:"thresholds"`
}

func (q quotaJSON) quota() Quota {
	out := Quota{ID: q.ID, Path: q.Path}
	if q.Thresholds.Hard != nil {
		out.Hard = *q.Thresholds.Hard
	}
	return out
}

func (p *papi) listQuotas(ctx context.Context, params api.OrderedValues) ([]Quota, error) {
	ctx = quiet(ctx)
	var out []Quota
	for {
		var resp struct {
			Quotas []quotaJSON `json:"quotas"`
			Resume *string     `json:"resume"`
		}
		if err := p.c.API.Get(ctx, quotasPath, "", params, nil, &resp); err != nil {
			return nil, p.err(err, "list quotas")
		}
		for _, q := range resp.Quotas {
			if q.Type == "directory" {
				out = append(out, q.quota())
			}
		}
		if resp.Resume == nil || *resp.Resume == "" {
			return out, nil
		}
		params = api.OrderedValues{{[]byte("resume"), []byte(*resp.Resume)}}
	}
}

func (p *papi) DirQuota(ctx context.Context, dir string) (*Quota, error) {
	ctx = quiet(ctx)
	qs, err := p.listQuotas(ctx, api.OrderedValues{{[]byte("path"), []byte(dir)}, {[]byte("type"), []byte("directory")}})
	if err != nil {
		return nil, err
	}
	for _, q := range qs {
		if path.Clean(q.Path) == dir {
			return &q, nil
		}
	}
	return nil, nil
}

func (p *papi) DirQuotas(ctx context.Context) ([]Quota, error) {
	ctx = quiet(ctx)
	return p.listQuotas(ctx, api.OrderedValues{{[]byte("type"), []byte("directory")}})
}

// CreateDirQuota makes an enforced hard directory quota (container: df on the export shows
// the quota), or, with hard 0, an unenforced accounting quota.
func (p *papi) CreateDirQuota(ctx context.Context, dir string, hard int64) error {
	ctx = quiet(ctx)
	thresholds := map[string]any{}
	if hard > 0 {
		thresholds["hard"] = hard
	}
	body := map[string]any{
		"path": dir, "type": "directory", "container": true, "enforced": hard > 0,
		"include_snapshots": false, "thresholds_include_overhead": false, "thresholds": thresholds,
	}
	if err := p.c.API.Post(ctx, quotasPath, "", nil, nil, body, nil); err != nil {
		return p.err(err, "create quota on %s", dir)
	}
	return nil
}

func (p *papi) SetQuotaHard(ctx context.Context, id string, hard int64) error {
	ctx = quiet(ctx)
	if err := p.c.UpdateQuotaSizeByID(ctx, id, hard, 0, 0, 0); err != nil {
		return p.err(err, "set quota %s hard threshold", id)
	}
	return nil
}

// DeleteDirQuota sends DELETE /quota/quotas?path=<dir>&type=directory: OneFS removes the
// quotas matching the filters (recurse_path_children is false: dir's own, not those below),
// and there is one directory quota per path at most.
func (p *papi) DeleteDirQuota(ctx context.Context, dir string) error {
	ctx = quiet(ctx)
	params := api.OrderedValues{{[]byte("path"), []byte(dir)}, {[]byte("type"), []byte("directory")}}
	if err := p.c.API.Delete(ctx, quotasPath, "", params, nil, nil); err != nil {
		return p.err(err, "delete quota on %s", dir)
	}
	return nil
}

// squashRoot is the map_root shiphold gives every export: root on a client that is not in
// root_clients becomes nobody, as OneFS's factory default does. Sent explicitly, so an access
// zone whose default export settings map root to root does not open the volume to root.
var squashRoot = map[string]any{"enabled": true, "user": map[string]string{"id": "USER:nobody"}}

// exportJSON is the part of a PAPI export that ExportOf reads.
type exportJSON struct {
	ID               int      `json:"id"`
	Paths            []string `json:"paths"`
	Clients          []string `json:"clients"`
	RootClients      []string `json:"root_clients"`
	ReadWriteClients []string `json:"read_write_clients"`
	ReadOnlyClients  []string `json:"read_only_clients"`
	MapRoot          *struct {
		Enabled *bool `json:"enabled"`
		User    *struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"user"`
	} `json:"map_root"`
	MapAll *struct {
		Enabled *bool `json:"enabled"`
	} `json:"map_all"`
}

// squashes reports whether the export's mapping turns root into someone else: map_root
// enabled to a user other than root, or map_all enabled (every user mapped).
func (e exportJSON) squashes() bool {
	if e.MapAll != nil && e.MapAll.Enabled != nil && *e.MapAll.Enabled {
		return true
	}
	m := e.MapRoot
	if m == nil || m.Enabled == nil || !*m.Enabled || m.User == nil {
		return false
	}
	id, name := strings.ToUpper(m.User.ID), m.User.Name
	return id != "USER:ROOT" && id != "UID:0" && (id != "" || (name != "" && name != "root"))
}

func (p *papi) exportsPath(id string) string {
	if id == "" {
		return exportsPath
	}
	return exportsPath + "/" + id
}

func zoneParam(zone string) api.OrderedValues {
	return api.OrderedValues{{[]byte("zone"), []byte(zone)}}
}

func (p *papi) ExportOf(ctx context.Context, zone, dir string) (*Export, error) {
	ctx = quiet(ctx)
	var resp struct {
		Exports []exportJSON `json:"exports"`
	}
	params := append(api.OrderedValues{{[]byte("path"), []byte(dir)}}, zoneParam(zone)...)
	if err := p.c.API.Get(ctx, exportsPath, "", params, nil, &resp); err != nil {
		return nil, p.err(err, "find export of %s in zone %s", dir, zone)
	}
	for _, e := range resp.Exports {
		if slices.ContainsFunc(e.Paths, func(p string) bool { return path.Clean(p) == dir }) {
			return &Export{ID: e.ID, Zone: zone, Path: dir, Clients: e.Clients, RootClients: e.RootClients,
				ReadWriteClients: e.ReadWriteClients, ReadOnlyClients: e.ReadOnlyClients, SquashesRoot: e.squashes()}, nil
		}
	}
	return nil, nil
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// CreateExport makes the export with root squashed (squashRoot) and answers its ID.
func (p *papi) CreateExport(ctx context.Context, e Export) (int, error) {
	ctx = quiet(ctx)
	body := map[string]any{
		"paths": []string{e.Path}, "clients": orEmpty(e.Clients), "root_clients": orEmpty(e.RootClients),
		"read_write_clients": orEmpty(e.ReadWriteClients), "read_only_clients": orEmpty(e.ReadOnlyClients),
		"map_root": squashRoot, "description": "shiphold CSI volume",
	}
	var resp struct {
		ID int `json:"id"`
	}
	if err := p.c.API.Post(ctx, exportsPath, "", zoneParam(e.Zone), nil, body, &resp); err != nil {
		return 0, p.err(err, "create export of %s in zone %s", e.Path, e.Zone)
	}
	return resp.ID, nil
}

func (p *papi) UpdateExportClients(ctx context.Context, e Export) error {
	ctx = quiet(ctx)
	body := map[string]any{
		"clients": orEmpty(e.Clients), "root_clients": orEmpty(e.RootClients),
		"read_write_clients": orEmpty(e.ReadWriteClients), "read_only_clients": orEmpty(e.ReadOnlyClients),
	}
	if err := p.c.API.Put(ctx, p.exportsPath(strconv.Itoa(e.ID)), "", zoneParam(e.Zone), nil, body, nil); err != nil {
		return p.err(err, "update clients of export %d in zone %s", e.ID, e.Zone)
	}
	return nil
}

func (p *papi) SquashRoot(ctx context.Context, zone string, id int) error {
	ctx = quiet(ctx)
	body := map[string]any{"map_root": squashRoot}
	if err := p.c.API.Put(ctx, p.exportsPath(strconv.Itoa(id)), "", zoneParam(zone), nil, body, nil); err != nil {
		return p.err(err, "squash root on export %d in zone %s", id, zone)
	}
	return nil
}

func (p *papi) DeleteExport(ctx context.Context, zone string, id int) error {
	ctx = quiet(ctx)
	if err := apiv2.ExportDeleteWithZone(ctx, p.c.API, id, zone); err != nil {
		return p.err(err, "delete export %d in zone %s", id, zone)
	}
	return nil
}

func snapshotOf(s *apiv1.IsiSnapshot) *IsiSnapshot {
	return &IsiSnapshot{ID: s.ID, Name: s.Name, Path: s.Path, Created: time.Unix(s.Created, 0), Size: s.Size}
}

func (p *papi) CreateSnapshot(ctx context.Context, name, dir string) (*IsiSnapshot, error) {
	ctx = quiet(ctx)
	s, err := p.c.CreateSnapshotWithPath(ctx, dir, name)
	if err != nil {
		return nil, p.err(err, "create snapshot %s of %s", name, dir)
	}
	return snapshotOf(s), nil
}

func (p *papi) Snapshot(ctx context.Context, name string) (*IsiSnapshot, error) {
	ctx = quiet(ctx)
	s, err := p.c.GetIsiSnapshotByIdentity(ctx, name)
	if err != nil {
		err = p.err(err, "snapshot %s", name)
		if backend.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if s == nil {
		return nil, nil
	}
	return snapshotOf(s), nil
}

func (p *papi) Snapshots(ctx context.Context) ([]IsiSnapshot, error) {
	ctx = quiet(ctx)
	l, err := p.c.GetSnapshots(ctx)
	if err != nil {
		return nil, p.err(err, "list snapshots")
	}
	out := make([]IsiSnapshot, 0, len(l))
	for _, s := range l {
		out = append(out, *snapshotOf(s))
	}
	return out, nil
}

func (p *papi) DeleteSnapshot(ctx context.Context, id int64) error {
	ctx = quiet(ctx)
	if err := p.c.API.Delete(ctx, snapshotsPath, strconv.FormatInt(id, 10), nil, nil, nil); err != nil {
		return p.err(err, "delete snapshot %d", id)
	}
	return nil
}

// SnapshotDir is /ifs/.snapshot/<snap>/<dir below /ifs>: OneFS shows every snapshot under
// the .snapshot directory of /ifs (System zone paths).
func (p *papi) SnapshotDir(snapName, dir string) string {
	return snapshotDir(snapName, dir)
}

func snapshotDir(snapName, dir string) string {
	return path.Join("/ifs/.snapshot", snapName, strings.TrimPrefix(dir, "/ifs/"))
}

func (p *papi) AvailableBytes(ctx context.Context) (int64, error) {
	ctx = quiet(ctx)
	stats, err := p.c.GetStatistics(ctx, []string{"ifs.bytes.avail"})
	if err != nil {
		return 0, p.err(err, "statistics ifs.bytes.avail")
	}
	for _, s := range stats.StatsList {
		if s.Key == "ifs.bytes.avail" {
			return int64(s.Value), nil
		}
	}
	return 0, backend.Errorf(backend.Unavailable, "isilon %s: statistics did not report ifs.bytes.avail", p.endpoint)
}

func (p *papi) ZoneBase(ctx context.Context, zone string) (string, error) {
	ctx = quiet(ctx)
	z, err := p.c.GetZoneByName(ctx, zone)
	if err != nil {
		return "", p.err(err, "access zone %s", zone)
	}
	if z == nil {
		return "", backend.Errorf(backend.NotFound, "isilon %s: access zone %s: not found", p.endpoint, zone)
	}
	return path.Clean(z.Path), nil
}

// escapeAttr keeps attribute values header-safe (request names may hold any UTF-8).
func escapeAttr(s string) string { return url.PathEscape(s) }

func unescapeAttr(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}
