package isilon

import (
	"context"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

// fakeArray is an in-memory OneFS: directories with user attributes, quotas, exports and
// snapshots. fail, when set, answers every call.
type fakeArray struct {
	mu        sync.Mutex
	dirs      map[string]map[string]string
	modes     map[string]string // directory -> mode it was created or chmodded with
	files     map[string]string // path -> content, to check copies
	quotas    map[string]*Quota
	exports   map[int]*Export
	snaps     map[string]*IsiSnapshot
	nextID    int
	fail      error
	calls     []string
	available int64
	// copyGate, when set, holds every Copy until it is closed (a slow copy).
	copyGate chan struct{}
	// zoneBase maps access zones to their base paths; exports outside are refused, as
	// OneFS does.
	zoneBase map[string]string
	// before, when set, runs as each call starts, before the fake's lock (to hold a call
	// while another is in flight).
	before func(call string)
}

func newFakeArray() *fakeArray {
	return &fakeArray{dirs: map[string]map[string]string{}, modes: map[string]string{}, files: map[string]string{}, quotas: map[string]*Quota{},
		exports: map[int]*Export{}, snaps: map[string]*IsiSnapshot{}, available: 1 << 40,
		zoneBase: map[string]string{"System": "/ifs", "zoneA": "/ifs/zoneA"}}
}

func (f *fakeArray) enter(call string) error {
	if f.before != nil {
		f.before(call)
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	return f.fail
}

func notFound(what string) error { return backend.Errorf(backend.NotFound, "fake: %s not found", what) }

func (f *fakeArray) Version(ctx context.Context) error {
	defer f.mu.Unlock()
	return f.enter("Version")
}

func (f *fakeArray) Mkdir(ctx context.Context, dir, mode string, attrs map[string]string) error {
	defer f.mu.Unlock()
	if err := f.enter("Mkdir " + dir); err != nil {
		return err
	}
	f.mkdirLocked(dir, mode, attrs)
	return nil
}

func (f *fakeArray) mkdirLocked(dir, mode string, attrs map[string]string) {
	for p := dir; p != "/ifs" && p != "/"; p = path.Dir(p) {
		if _, ok := f.dirs[p]; !ok {
			f.dirs[p] = map[string]string{}
			f.modes[p] = mode // as OneFS: parents made by recursive=true get the mode too
		}
	}
	for k, v := range attrs {
		f.dirs[dir][k] = v
	}
}

func (f *fakeArray) CreateDir(ctx context.Context, dir, mode string, attrs map[string]string) (bool, error) {
	defer f.mu.Unlock()
	if err := f.enter("CreateDir " + dir); err != nil {
		return false, err
	}
	if _, ok := f.dirs[dir]; ok {
		return false, nil
	}
	f.mkdirLocked(dir, mode, attrs)
	return true, nil
}

func (f *fakeArray) Attrs(ctx context.Context, dir string) (map[string]string, error) {
	defer f.mu.Unlock()
	if err := f.enter("Attrs " + dir); err != nil {
		return nil, err
	}
	a, ok := f.dirs[dir]
	if !ok {
		return nil, notFound(dir)
	}
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	return out, nil
}

func (f *fakeArray) SetAttrs(ctx context.Context, dir string, attrs map[string]string) error {
	defer f.mu.Unlock()
	if err := f.enter("SetAttrs " + dir); err != nil {
		return err
	}
	a, ok := f.dirs[dir]
	if !ok {
		return notFound(dir)
	}
	for k, v := range attrs {
		a[k] = v
	}
	return nil
}

func (f *fakeArray) Chmod(ctx context.Context, dir, mode string) error {
	defer f.mu.Unlock()
	if err := f.enter("Chmod " + dir); err != nil {
		return err
	}
	if _, ok := f.dirs[dir]; !ok {
		return notFound(dir)
	}
	f.modes[dir] = mode
	return nil
}

func (f *fakeArray) RemoveAttrs(ctx context.Context, dir string, names []string) error {
	defer f.mu.Unlock()
	if err := f.enter("RemoveAttrs " + dir); err != nil {
		return err
	}
	a, ok := f.dirs[dir]
	if !ok {
		return notFound(dir)
	}
	for _, n := range names {
		delete(a, n)
	}
	return nil
}

func (f *fakeArray) Children(ctx context.Context, dir string) ([]string, error) {
	defer f.mu.Unlock()
	if err := f.enter("Children " + dir); err != nil {
		return nil, err
	}
	if _, ok := f.dirs[dir]; !ok {
		return nil, notFound(dir)
	}
	var out []string
	for p := range f.dirs {
		if path.Dir(p) == dir {
			out = append(out, path.Base(p))
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeArray) RemoveAll(ctx context.Context, dir string) error {
	defer f.mu.Unlock()
	if err := f.enter("RemoveAll " + dir); err != nil {
		return err
	}
	if _, ok := f.dirs[dir]; !ok {
		return notFound(dir)
	}
	for p := range f.dirs {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			delete(f.dirs, p)
		}
	}
	for p := range f.files {
		if strings.HasPrefix(p, dir+"/") {
			delete(f.files, p)
		}
	}
	return nil
}

func (f *fakeArray) Copy(ctx context.Context, src, dst string) error {
	f.mu.Lock()
	gate := f.copyGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return backend.Errorf(backend.Unavailable, "fake: copy cut: %v", ctx.Err())
		}
	}
	defer f.mu.Unlock()
	if err := f.enter("Copy " + src + " " + dst); err != nil {
		return err
	}
	found := false
	for p, c := range f.files {
		if rel, ok := strings.CutPrefix(p, src+"/"); ok {
			f.files[dst+"/"+rel] = c
			found = true
		}
	}
	for p := range f.dirs {
		if rel, ok := strings.CutPrefix(p, src+"/"); ok {
			if _, ok := f.dirs[dst+"/"+rel]; !ok {
				f.dirs[dst+"/"+rel] = map[string]string{}
			}
			found = true
		}
	}
	if _, ok := f.dirs[src]; !ok && !found {
		return notFound(src)
	}
	return nil
}

func (f *fakeArray) Move(ctx context.Context, src, dst string) error {
	defer f.mu.Unlock()
	if err := f.enter("Move " + src + " " + dst); err != nil {
		return err
	}
	if _, ok := f.dirs[dst]; ok {
		return backend.Errorf(backend.FailedPrecondition, "fake: %s exists", dst)
	}
	if _, ok := f.dirs[src]; !ok {
		return notFound(src)
	}
	for p, a := range f.dirs {
		if p == src || strings.HasPrefix(p, src+"/") {
			delete(f.dirs, p)
			f.dirs[dst+strings.TrimPrefix(p, src)] = a
		}
	}
	for p, c := range f.files {
		if strings.HasPrefix(p, src+"/") {
			delete(f.files, p)
			f.files[dst+strings.TrimPrefix(p, src)] = c
		}
	}
	return nil
}

func (f *fakeArray) Tree(ctx context.Context, dir string) (map[string]int64, error) {
	defer f.mu.Unlock()
	if err := f.enter("Tree " + dir); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for p := range f.dirs {
		if rel, ok := strings.CutPrefix(p, dir+"/"); ok {
			out[rel] = -1
		}
	}
	for p, c := range f.files {
		if rel, ok := strings.CutPrefix(p, dir+"/"); ok {
			out[rel] = int64(len(c))
		}
	}
	return out, nil
}

func (f *fakeArray) DirQuota(ctx context.Context, dir string) (*Quota, error) {
	defer f.mu.Unlock()
	if err := f.enter("DirQuota " + dir); err != nil {
		return nil, err
	}
	if q, ok := f.quotas[dir]; ok {
		c := *q
		return &c, nil
	}
	return nil, nil
}

func (f *fakeArray) DirQuotas(ctx context.Context) ([]Quota, error) {
	defer f.mu.Unlock()
	if err := f.enter("DirQuotas"); err != nil {
		return nil, err
	}
	var out []Quota
	for _, q := range f.quotas {
		out = append(out, *q)
	}
	return out, nil
}

func (f *fakeArray) CreateDirQuota(ctx context.Context, dir string, hard int64) error {
	defer f.mu.Unlock()
	if err := f.enter("CreateDirQuota " + dir); err != nil {
		return err
	}
	if _, ok := f.quotas[dir]; ok {
		return backend.Errorf(backend.AlreadyExists, "fake: quota exists")
	}
	f.nextID++
	f.quotas[dir] = &Quota{ID: "q" + strings.Repeat("x", f.nextID), Path: dir, Hard: hard}
	return nil
}

func (f *fakeArray) SetQuotaHard(ctx context.Context, id string, hard int64) error {
	defer f.mu.Unlock()
	if err := f.enter("SetQuotaHard " + id); err != nil {
		return err
	}
	for _, q := range f.quotas {
		if q.ID == id {
			q.Hard = hard
			return nil
		}
	}
	return notFound(id)
}

func (f *fakeArray) DeleteDirQuota(ctx context.Context, dir string) error {
	defer f.mu.Unlock()
	if err := f.enter("DeleteDirQuota " + dir); err != nil {
		return err
	}
	delete(f.quotas, dir)
	return nil
}

func (f *fakeArray) ExportOf(ctx context.Context, zone, dir string) (*Export, error) {
	defer f.mu.Unlock()
	if err := f.enter("ExportOf " + dir + " in " + zone); err != nil {
		return nil, err
	}
	if _, ok := f.zoneBase[zone]; !ok {
		return nil, notFound("zone " + zone)
	}
	for _, e := range f.exports {
		if e.Path == dir && e.Zone == zone {
			c := *e
			return &c, nil
		}
	}
	return nil, nil
}

func (f *fakeArray) CreateExport(ctx context.Context, e Export) (int, error) {
	defer f.mu.Unlock()
	if err := f.enter("CreateExport " + e.Path + " in " + e.Zone); err != nil {
		return 0, err
	}
	base, ok := f.zoneBase[e.Zone]
	if !ok {
		return 0, notFound("zone " + e.Zone)
	}
	if !strings.HasPrefix(e.Path, base+"/") {
		return 0, backend.Errorf(backend.InvalidArgument, "fake: Path '%s' is not within access zone '%s' base path '%s'", e.Path, e.Zone, base)
	}
	f.nextID++
	e.ID = f.nextID
	e.SquashesRoot = true // papi sends map_root nobody with every create
	f.exports[e.ID] = &e
	return e.ID, nil
}

func (f *fakeArray) UpdateExportClients(ctx context.Context, e Export) error {
	defer f.mu.Unlock()
	if err := f.enter("UpdateExportClients in " + e.Zone); err != nil {
		return err
	}
	old, ok := f.exports[e.ID]
	if !ok || old.Zone != e.Zone {
		return notFound("export")
	}
	e.Path, e.SquashesRoot = old.Path, old.SquashesRoot
	f.exports[e.ID] = &e
	return nil
}

func (f *fakeArray) SquashRoot(ctx context.Context, zone string, id int) error {
	defer f.mu.Unlock()
	if err := f.enter("SquashRoot in " + zone); err != nil {
		return err
	}
	e, ok := f.exports[id]
	if !ok || e.Zone != zone {
		return notFound("export")
	}
	e.SquashesRoot = true
	return nil
}

func (f *fakeArray) DeleteExport(ctx context.Context, zone string, id int) error {
	defer f.mu.Unlock()
	if err := f.enter("DeleteExport in " + zone); err != nil {
		return err
	}
	if e, ok := f.exports[id]; !ok || e.Zone != zone {
		return notFound("export")
	}
	delete(f.exports, id)
	return nil
}

func (f *fakeArray) CreateSnapshot(ctx context.Context, name, dir string) (*IsiSnapshot, error) {
	defer f.mu.Unlock()
	if err := f.enter("CreateSnapshot " + name); err != nil {
		return nil, err
	}
	if _, ok := f.snaps[name]; ok {
		return nil, backend.Errorf(backend.AlreadyExists, "fake: snapshot exists")
	}
	f.nextID++
	s := &IsiSnapshot{ID: int64(f.nextID), Name: name, Path: dir, Created: time.Unix(1700000000, 0), Size: 42}
	f.snaps[name] = s
	for p, c := range f.files {
		if rel, ok := strings.CutPrefix(p, dir+"/"); ok {
			f.files[snapshotDir(name, dir)+"/"+rel] = c
		}
	}
	c := *s
	return &c, nil
}

func (f *fakeArray) Snapshot(ctx context.Context, name string) (*IsiSnapshot, error) {
	defer f.mu.Unlock()
	if err := f.enter("Snapshot " + name); err != nil {
		return nil, err
	}
	if s, ok := f.snaps[name]; ok {
		c := *s
		return &c, nil
	}
	return nil, nil
}

func (f *fakeArray) Snapshots(ctx context.Context) ([]IsiSnapshot, error) {
	defer f.mu.Unlock()
	if err := f.enter("Snapshots"); err != nil {
		return nil, err
	}
	var out []IsiSnapshot
	for _, s := range f.snaps {
		out = append(out, *s)
	}
	return out, nil
}

func (f *fakeArray) DeleteSnapshot(ctx context.Context, id int64) error {
	defer f.mu.Unlock()
	if err := f.enter("DeleteSnapshot"); err != nil {
		return err
	}
	for n, s := range f.snaps {
		if s.ID == id {
			delete(f.snaps, n)
			return nil
		}
	}
	return notFound("snapshot")
}

func (f *fakeArray) SnapshotDir(snapName, dir string) string { return snapshotDir(snapName, dir) }

func (f *fakeArray) AvailableBytes(ctx context.Context) (int64, error) {
	defer f.mu.Unlock()
	if err := f.enter("AvailableBytes"); err != nil {
		return 0, err
	}
	return f.available, nil
}

func (f *fakeArray) ZoneBase(ctx context.Context, zone string) (string, error) {
	defer f.mu.Unlock()
	if err := f.enter("ZoneBase " + zone); err != nil {
		return "", err
	}
	base, ok := f.zoneBase[zone]
	if !ok {
		return "", notFound("zone " + zone)
	}
	return base, nil
}
