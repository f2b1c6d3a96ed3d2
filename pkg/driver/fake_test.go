package driver

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/volid"
)

// fakeController keeps volumes in memory; block, when set, makes CreateVolume wait on it.
type fakeController struct {
	name, kind string
	mu         sync.Mutex
	vols       map[string]*backend.Volume
	snaps      map[string]*backend.Snapshot
	published  map[string]backend.Node
	// publishedRO records whether PublishVolume was asked for a read-only grant.
	publishedRO map[string]bool
	failWith    error
	// listFailWith fails ListVolumes and ListSnapshots, the calls that span backends.
	listFailWith error
	block        chan struct{}
	entered      chan struct{}
	// slowDelete, when set, holds DeleteVolume's storage call past any deadline, as a
	// librados call does; deletes counts the storage calls started.
	slowDelete chan struct{}
	storage    ceph.Calls
	deletes    atomic.Int32
	// unit rounds allocations up (RBD allocates whole MiB); a clone keeps its source's
	// size when that is larger, as on RBD and Isilon.
	unit int64
	// createDelay is the storage's time for one create; beforeCreate may fail a request
	// (a clone still copying answers Pending).
	createDelay  time.Duration
	beforeCreate func(*backend.VolumeRequest) error
	// listBlock, when set, holds ListVolumes until closed or the call's deadline (a
	// frozen monitor); lists counts ListVolumes calls.
	listBlock chan struct{}
	lists     atomic.Int32
	// listed counts the volumes the listing calls handed the driver (each read one on the
	// storage); capacities counts Capacity calls.
	listed     atomic.Int32
	capacities atomic.Int32
	// gets counts GetVolume calls.
	gets atomic.Int32
}

func newFake(name, kind string) *fakeController {
	return &fakeController{name: name, kind: kind, vols: map[string]*backend.Volume{}, snaps: map[string]*backend.Snapshot{}, published: map[string]backend.Node{}, publishedRO: map[string]bool{}}
}

func (f *fakeController) Name() string            { return f.name }
func (f *fakeController) Kind() string            { return f.kind }
func (f *fakeController) ParameterKeys() []string { return []string{"pool"} }
func (f *fakeController) Close()                  {}
func (f *fakeController) Probe(context.Context) error {
	return f.failWith
}

func (f *fakeController) CreateVolume(ctx context.Context, r *backend.VolumeRequest) (*backend.Volume, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.block != nil {
		<-f.block
	}
	if f.failWith != nil {
		return nil, f.failWith
	}
	time.Sleep(f.createDelay)
	if f.beforeCreate != nil {
		if err := f.beforeCreate(r); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.ID(f.name, "1")
	size := f.allocated(r)
	if v, ok := f.vols[id.String()]; ok {
		if v.CapacityBytes != size {
			return nil, backend.Errorf(backend.AlreadyExists, "volume %s exists with %d bytes", r.Name, v.CapacityBytes)
		}
		return v, nil
	}
	if r.SourceSnapshot != nil && f.snaps[r.SourceSnapshot.String()] == nil {
		return nil, backend.Errorf(backend.NotFound, "snapshot %s not found", r.SourceSnapshot)
	}
	if r.SourceVolume != nil && f.vols[r.SourceVolume.String()] == nil {
		return nil, backend.Errorf(backend.NotFound, "volume %s not found", r.SourceVolume)
	}
	v := &backend.Volume{ID: id, CapacityBytes: size, Context: map[string]string{"tenant": r.Tenant}, SourceSnapshot: r.SourceSnapshot, SourceVolume: r.SourceVolume}
	f.vols[id.String()] = v
	return v, nil
}

// allocated is the size the fake gives a request; f.mu is held.
func (f *fakeController) allocated(r *backend.VolumeRequest) int64 {
	size := r.RequiredBytes
	if f.unit > 0 {
		size = (size + f.unit - 1) / f.unit * f.unit
	}
	var src int64
	if r.SourceVolume != nil && f.vols[r.SourceVolume.String()] != nil {
		src = f.vols[r.SourceVolume.String()].CapacityBytes
	}
	if r.SourceSnapshot != nil && f.snaps[r.SourceSnapshot.String()] != nil {
		src = f.snaps[r.SourceSnapshot.String()].SizeBytes
	}
	return max(size, src)
}

func (f *fakeController) DeleteVolume(ctx context.Context, id volid.Volume, _ map[string]string) error {
	if f.slowDelete != nil {
		if err := f.storage.Do(ctx, func() error { f.deletes.Add(1); <-f.slowDelete; return nil }); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[id.String()]; !ok {
		return backend.Errorf(backend.NotFound, "no volume %s", id)
	}
	delete(f.vols, id.String())
	return nil
}

func (f *fakeController) GetVolume(ctx context.Context, id volid.Volume, _ map[string]string) (*backend.Volume, error) {
	f.gets.Add(1)
	if f.failWith != nil {
		return nil, f.failWith
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vols[id.String()]
	if !ok {
		return nil, backend.Errorf(backend.NotFound, "no volume %s", id)
	}
	return v, nil
}

func (f *fakeController) ListVolumes(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	f.lists.Add(1)
	f.mu.Lock()
	block := f.listBlock
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, backend.Errorf(backend.Unavailable, "monitors do not answer: %v", ctx.Err())
		}
	}
	if f.listFailWith != nil {
		return nil, f.listFailWith
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*backend.Volume
	for _, v := range f.vols {
		if tenant == "" || v.ID.Tenant == tenant {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	f.listed.Add(int32(len(out)))
	return out, nil
}

// ListVolumesAfter is a storage that reads only the page it lists (counted in listed).
func (f *fakeController) ListVolumesAfter(ctx context.Context, after string, max int) ([]*backend.Volume, error) {
	if f.listFailWith != nil {
		return nil, f.listFailWith
	}
	f.mu.Lock()
	all := make([]*backend.Volume, 0, len(f.vols))
	for _, v := range f.vols {
		all = append(all, v)
	}
	f.mu.Unlock()
	out := backend.PageOf(all, after, max)
	f.listed.Add(int32(len(out)))
	return out, nil
}

func (f *fakeController) ExpandVolume(ctx context.Context, id volid.Volume, req, lim int64, _ map[string]string) (int64, bool, error) {
	v, err := f.GetVolume(ctx, id, nil)
	if err != nil {
		return 0, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req > v.CapacityBytes {
		v.CapacityBytes = req
	}
	return v.CapacityBytes, true, nil
}

func (f *fakeController) CreateSnapshot(ctx context.Context, src volid.Volume, name string, _, _ map[string]string) (*backend.Snapshot, error) {
	v, err := f.GetVolume(ctx, src, nil)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &backend.Snapshot{ID: volid.Snapshot{Volume: src, SnapHash: volid.Hash(name)}, SizeBytes: v.CapacityBytes, CreatedAt: time.Unix(1, 0), Ready: true}
	f.snaps[s.ID.String()] = s
	return s, nil
}

func (f *fakeController) DeleteSnapshot(ctx context.Context, id volid.Snapshot, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.snaps, id.String())
	return nil
}

func (f *fakeController) GetSnapshot(ctx context.Context, id volid.Snapshot) (*backend.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[id.String()]
	if !ok {
		return nil, backend.Errorf(backend.NotFound, "no snapshot %s", id)
	}
	return s, nil
}

func (f *fakeController) ListSnapshots(ctx context.Context, src *volid.Volume) ([]*backend.Snapshot, error) {
	if f.listFailWith != nil {
		return nil, f.listFailWith
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*backend.Snapshot
	for _, s := range f.snaps {
		if src == nil || s.ID.Volume == *src {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeController) Capacity(ctx context.Context, _ map[string]string) (int64, error) {
	f.capacities.Add(1)
	if f.failWith != nil {
		return 0, f.failWith
	}
	return 100 << 30, nil
}

// fakePublisher adds storage-side node access, like an Isilon export client list.
type fakePublisher struct{ *fakeController }

func (f fakePublisher) PublishVolume(ctx context.Context, id volid.Volume, n backend.Node, access backend.PublishAccess, _, _ map[string]string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.vols[id.String()] == nil {
		return nil, backend.Errorf(backend.NotFound, "no volume %s", id)
	}
	if held, ok := f.published[id.String()]; ok && held.Name != n.Name {
		if err := backend.CheckSingleNode(id.String(), n, access, []string{held.Name}); err != nil {
			return nil, err
		}
	}
	f.published[id.String()] = n
	f.publishedRO[id.String()] = access.ReadOnly
	return map[string]string{"client": n.Address}, nil
}

func (f fakePublisher) UnpublishVolume(ctx context.Context, id volid.Volume, n backend.Node, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.published, id.String())
	return nil
}

// fakeStager stages by creating a directory below the staging path.
type fakeStager struct {
	mu      sync.Mutex
	staged  map[string]string
	repairs int
	last    *backend.StageRequest
}

func (s *fakeStager) StageVolume(ctx context.Context, r *backend.StageRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged[r.ID.String()] = r.StagingPath
	s.last = r
	return os.MkdirAll(filepath.Join(r.StagingPath, "fs"), 0o755)
}

func (s *fakeStager) UnstageVolume(ctx context.Context, id volid.Volume, path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.staged, id.String())
	return nil
}

func (s *fakeStager) PublishSource(ctx context.Context, id volid.Volume, path string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.staged[id.String()]; !ok {
		return "", false, backend.Errorf(backend.FailedPrecondition, "volume %s is not staged", id)
	}
	return path + "/fs", false, nil
}

func (s *fakeStager) ExpandVolume(ctx context.Context, id volid.Volume, path string, req int64) (int64, error) {
	return req, nil
}

func (s *fakeStager) Repair(ctx context.Context, id volid.Volume, path string, _ map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repairs++
	return nil
}
