package tenant

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// indexedStorage is a backend whose listing of names is one directory read and whose
// volumes cost one read (an RBD image open, a CephFS subvolume info) each; it counts them.
type indexedStorage struct {
	backend.Controller
	mu      sync.Mutex
	vols    map[string]*backend.Volume // by ID
	foreign map[string]volid.Volume    // objects of another backend in the same places
	adopted map[string]*backend.Volume // adopted in place: in no directory the index lists
	opened  int                        // volumes read one by one
}

func newIndexedStorage(vols ...*backend.Volume) *indexedStorage {
	s := &indexedStorage{vols: map[string]*backend.Volume{}, foreign: map[string]volid.Volume{}, adopted: map[string]*backend.Volume{}}
	for _, v := range vols {
		s.vols[v.ID.String()] = v
	}
	return s
}

func (s *indexedStorage) ListAllocations(ctx context.Context) ([]*backend.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened += len(s.vols) + len(s.foreign)
	out := make([]*backend.Volume, 0, len(s.vols))
	for _, v := range s.vols {
		c := *v
		out = append(out, &c)
	}
	return append(out, s.adoptedCopies()...), nil
}

func (s *indexedStorage) AdoptedAllocations(ctx context.Context) ([]*backend.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adoptedCopies(), nil
}

func (s *indexedStorage) adoptedCopies() []*backend.Volume {
	var out []*backend.Volume
	for _, v := range s.adopted {
		c := *v
		out = append(out, &c)
	}
	return out
}

func (s *indexedStorage) ListVolumes(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	return s.ListAllocations(ctx)
}

func (s *indexedStorage) AllocationIDs(ctx context.Context) ([]volid.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]volid.Volume, 0, len(s.vols)+len(s.foreign))
	for _, v := range s.vols {
		out = append(out, v.ID)
	}
	for _, id := range s.foreign {
		out = append(out, id)
	}
	return out, nil
}

func (s *indexedStorage) AllocationsOf(ctx context.Context, ids []volid.Volume) ([]*backend.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened += len(ids)
	var out []*backend.Volume
	for _, id := range ids {
		if v, ok := s.vols[id.String()]; ok {
			c := *v
			out = append(out, &c)
		}
	}
	return out, nil
}

func (s *indexedStorage) reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.opened
	s.opened = 0
	return n
}

func (s *indexedStorage) put(v *backend.Volume) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vols[v.ID.String()] = v
}

func (s *indexedStorage) drop(id volid.Volume) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.vols, id.String())
}

// TestLedgerReadingOpensOnlyNewVolumes: at 10,000 volumes a reading reads the names, and
// opens only the volumes that appeared since the last reading (and those still being made);
// the counts stay exact, also for volumes deleted or made outside this controller.
func TestLedgerReadingOpensOnlyNewVolumes(t *testing.T) {
	const n = 10000
	c := newClock()
	rbd := newIndexedStorage()
	for i := range n {
		rbd.put(vol("rbd", fmt.Sprintf("t%d", i%1000), fmt.Sprint("v", i), 1<<20))
	}
	for i := range 50 { // another backend's images in the same pool
		rbd.foreign[fmt.Sprint("f", i)] = id("rbd", "t1", fmt.Sprint("other", i))
	}
	l := NewLedger(map[string]backend.Controller{"rbd": rbd}, config.Tenants{Default: config.TenantQuota{MaxVolumes: 100}},
		LedgerOptions{ReadInterval: 5 * 60e9, Now: c.now})
	ctx := context.Background()
	if err := l.Read(ctx, "rbd"); err != nil {
		t.Fatal(err)
	}
	if got := rbd.reads(); got > n+50 {
		t.Fatalf("the first reading read %d volumes, want at most %d", got, n+50)
	}

	// Outside this controller: 5 made (one still copying, at 0 bytes), 3 deleted; inside: 1 made.
	for i := range 5 {
		rbd.put(vol("rbd", "t7", fmt.Sprint("new", i), 2<<20))
	}
	rbd.put(vol("rbd", "t7", "copying", 0))
	for i := range 3 {
		rbd.drop(id("rbd", fmt.Sprintf("t%d", i), fmt.Sprint("v", i)))
	}
	r, err := l.ReserveVolume(id("rbd", "t7", "mine"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	rbd.put(vol("rbd", "t7", "mine", 1<<20))
	r.Commit(1 << 20)

	if err := l.Read(ctx, "rbd"); err != nil {
		t.Fatal(err)
	}
	if got := rbd.reads(); got != 6 {
		t.Fatalf("a reading of %d volumes, 6 of them new to the ledger, read %d volumes one by one; want 6", n+6, got)
	}
	if u := l.Usage("t7"); u.Volumes != 10+7 || u.Bytes != 10<<20+5*(2<<20)+1<<20 {
		t.Fatalf("tenant t7 after the reading: %d volumes, %d bytes; want 17, %d", u.Volumes, u.Bytes, int64(10<<20+5*(2<<20)+1<<20))
	}
	if u := l.Usage("t0"); u.Volumes != 9 {
		t.Fatalf("tenant t0 after one of its volumes was deleted outside: %d volumes, want 9", u.Volumes)
	}

	// The clone still copying is read again until it has its size.
	rbd.put(vol("rbd", "t7", "copying", 3<<20))
	if err := l.Read(ctx, "rbd"); err != nil {
		t.Fatal(err)
	}
	if got, u := rbd.reads(), l.Usage("t7"); got != 1 || u.Bytes != 10<<20+5*(2<<20)+1<<20+3<<20 {
		t.Fatalf("the finished clone: %d reads, tenant t7 at %d bytes", got, u.Bytes)
	}
}

// TestLedgerCountsAdoptedVolumesAtEveryReading: volumes adopted in place are in no directory
// the index lists; a reading that reads only new volumes must still count them (it dropped
// them, and a tenant's adopted terabytes went uncounted between full readings), and one
// adopted since the last reading (shipholdctl import runs outside this controller) is counted
// at the next.
func TestLedgerCountsAdoptedVolumesAtEveryReading(t *testing.T) {
	c := newClock()
	rbd := newIndexedStorage(vol("rbd", "shop", "a", 10))
	legacy := &backend.Volume{ID: adoptedID(t, "legacy-site"), CapacityBytes: 1000}
	rbd.adopted[legacy.ID.String()] = legacy
	l := NewLedger(map[string]backend.Controller{"rbd": rbd}, config.Tenants{Default: config.TenantQuota{MaxVolumes: 100}},
		LedgerOptions{ReadInterval: 5 * 60e9, Now: c.now, FullReadEvery: 100})
	ctx := context.Background()
	for i, want := range []Usage{{Volumes: 2, Bytes: 1010}, {Volumes: 2, Bytes: 1010}, {Volumes: 3, Bytes: 1510}} {
		if i == 2 {
			later := &backend.Volume{ID: adoptedID(t, "legacy-blog"), CapacityBytes: 500}
			rbd.adopted[later.ID.String()] = later
		}
		if err := l.Read(ctx, "rbd"); err != nil {
			t.Fatal(err)
		}
		if u := l.Usage("shop"); u.Volumes != want.Volumes || u.Bytes != want.Bytes {
			t.Fatalf("reading %d: tenant shop at %d volumes, %d bytes; want %d, %d (adopted volumes counted)", i+1, u.Volumes, u.Bytes, want.Volumes, want.Bytes)
		}
	}
}

func adoptedID(t *testing.T, object string) volid.Volume {
	t.Helper()
	id, err := volid.Adopted("rbd", "shop", "1", object)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestLedgerReadsEveryVolumeAgainNowAndThen: a volume resized outside this controller is
// seen at the next full reading, every FullReadEvery readings.
func TestLedgerReadsEveryVolumeAgainNowAndThen(t *testing.T) {
	c := newClock()
	rbd := newIndexedStorage(vol("rbd", "shop", "a", 10), vol("rbd", "shop", "b", 10))
	l := NewLedger(map[string]backend.Controller{"rbd": rbd}, config.Tenants{}, LedgerOptions{FullReadEvery: 3, Now: c.now})
	ctx := context.Background()
	var reads []int
	for i := range 4 {
		if i == 1 {
			rbd.put(vol("rbd", "shop", "a", 30))
		}
		if err := l.Read(ctx, "rbd"); err != nil {
			t.Fatal(err)
		}
		reads = append(reads, rbd.reads())
		if want := map[bool]int64{true: 40, false: 20}[i >= 3]; l.Usage("shop").Bytes != want {
			t.Fatalf("reading %d: %d bytes, want %d", i, l.Usage("shop").Bytes, want)
		}
	}
	if fmt.Sprint(reads) != "[2 0 0 2]" {
		t.Fatalf("volumes read per reading %v, want [2 0 0 2]: all at the first and every third", reads)
	}
}
