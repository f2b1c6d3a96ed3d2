package tenant

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// storage is a backend.Controller that only lists, from a volume set tests change; a
// listing takes its copy when it starts and, with hold set, returns when hold is closed.
type storage struct {
	backend.Controller
	mu      sync.Mutex
	vols    map[string]*backend.Volume
	err     error
	hold    chan struct{}
	started chan struct{}
	// took is how long a listing takes; it ends early with the call's context, as the
	// backends' calls do.
	took time.Duration
}

func newStorage(vols ...*backend.Volume) *storage {
	s := &storage{vols: map[string]*backend.Volume{}}
	for _, v := range vols {
		s.vols[v.ID.String()] = v
	}
	return s
}

func (s *storage) ListVolumes(ctx context.Context, tenant string) ([]*backend.Volume, error) {
	s.mu.Lock()
	out := make([]*backend.Volume, 0, len(s.vols))
	for _, v := range s.vols {
		if tenant == "" || v.ID.Tenant == tenant {
			out = append(out, v)
		}
	}
	err, hold, started, took := s.err, s.hold, s.started, s.took
	s.mu.Unlock()
	select {
	case <-time.After(took):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if started != nil {
		started <- struct{}{}
	}
	if hold != nil {
		<-hold
	}
	return out, err
}

func (s *storage) set(fn func(*storage)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time       { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) pass(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func newClock() *clock                { return &clock{t: time.Unix(1_700_000_000, 0)} }
func id(be, tenant, name string) volid.Volume {
	return volid.Volume{Backend: be, Tenant: tenant, Hash: volid.Hash(name)}
}

func wantCode(t *testing.T, err error, code backend.Code, msg string) {
	t.Helper()
	if err == nil || backend.CodeOf(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("got %v, want %v mentioning %q", err, code, msg)
	}
}

func newTestLedger(t *testing.T, c *clock, quotas config.Tenants, ctrls map[string]backend.Controller) *Ledger {
	t.Helper()
	return NewLedger(ctrls, quotas, LedgerOptions{ReadInterval: time.Minute, StaleAfter: 10 * time.Minute, PendingFor: 30 * time.Minute, Now: c.now})
}

// TestLedgerWhileABackendIsUnreachable: its last reading counts until it is older than
// StaleAfter; then tenants with volumes there are refused (UNAVAILABLE), others are not.
// A backend never read refuses every tenant with a quota.
func TestLedgerWhileABackendIsUnreachable(t *testing.T) {
	c := newClock()
	ceph := newStorage(vol("ceph", "shop", "a", 4), vol("ceph", "shop", "b", 4))
	nfs := newStorage()
	quota := config.TenantQuota{MaxVolumes: 3, MaxBytes: 100}
	quotas := config.Tenants{Overrides: map[string]config.TenantQuota{"shop": quota, "blog": quota}}
	l := newTestLedger(t, c, quotas, map[string]backend.Controller{"ceph": ceph, "nfs": nfs})

	_, err := l.ReserveVolume(id("nfs", "shop", "n1"), 1)
	wantCode(t, err, backend.Unavailable, `usage on backend "ceph" is not known (not read yet)`)
	if _, err := l.ReserveVolume(id("nfs", "unlimited-tenant", "x"), 1); err != nil {
		t.Fatalf("no quota, no check: %v", err)
	}
	l = newTestLedger(t, c, quotas, map[string]backend.Controller{"ceph": ceph, "nfs": nfs})
	if err := l.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}

	ceph.set(func(s *storage) { s.err = errors.New("monitors do not answer") })
	if err := l.Read(context.Background(), "ceph"); err == nil {
		t.Fatal("a failed reading reports no error")
	}
	c.pass(9 * time.Minute)
	r, err := l.ReserveVolume(id("nfs", "shop", "n1"), 1)
	if err != nil {
		t.Fatalf("within the bound, the last reading counts: %v", err)
	}
	r.Commit(1)
	_, err = l.ReserveVolume(id("nfs", "shop", "n2"), 1)
	wantCode(t, err, backend.ResourceExhausted, "has 3 volumes, its quota is 3")

	c.pass(2 * time.Minute)
	_, err = l.ReserveVolume(id("nfs", "shop", "n2"), 1)
	wantCode(t, err, backend.Unavailable, `tenant "shop" has volumes on backend "ceph", whose usage was last read 11m0s ago (listing volumes on backend "ceph": monitors do not answer)`)
	if _, err := l.ReserveVolume(id("nfs", "blog", "n1"), 1); err != nil {
		t.Fatalf("a tenant without volumes on the stale backend is refused: %v", err)
	}

	ceph.set(func(s *storage) { s.err = nil; delete(s.vols, vol("ceph", "shop", "a", 0).ID.String()) })
	if err := l.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReserveVolume(id("nfs", "shop", "n2"), 1); err != nil {
		t.Fatalf("after the backend answers again: %v", err)
	}
}

// TestLedgerReadingKeepsConcurrentChanges: a create or delete this controller makes while
// a listing runs is neither lost nor undone by the listing's older picture.
func TestLedgerReadingKeepsConcurrentChanges(t *testing.T) {
	c := newClock()
	old := vol("ceph", "shop", "old", 10)
	ceph := newStorage(old)
	l := newTestLedger(t, c, config.Tenants{Default: config.TenantQuota{MaxBytes: 100}}, map[string]backend.Controller{"ceph": ceph})
	if err := l.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ceph.set(func(s *storage) { s.hold, s.started = make(chan struct{}), make(chan struct{}) })
	done := make(chan error)
	go func() { done <- l.Read(context.Background(), "ceph") }()
	<-ceph.started // the listing has its picture: "old" only

	r, err := l.ReserveVolume(id("ceph", "shop", "new"), 20)
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(20)
	l.Forget(old.ID)
	close(ceph.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if u := l.Usage("shop"); u.Volumes != 1 || u.Bytes != 20 {
		t.Fatalf("after a reading that overlapped a create and a delete: %d volumes, %d bytes; want 1, 20", u.Volumes, u.Bytes)
	}
}

// A reading of one tenant (ReadTenant) before the backend's first full reading: it counts
// what the tenant has, keeps this controller's changes made while it ran, leaves other
// tenants unknown, and a full reading supersedes it.
func TestLedgerReadsOneTenantOnDemand(t *testing.T) {
	c := newClock()
	old := vol("ceph", "shop", "old", 10)
	ceph := newStorage(old, vol("ceph", "shop", "older", 10), vol("ceph", "blog", "b", 10))
	quotas := config.Tenants{Default: config.TenantQuota{MaxBytes: 100}}
	l := newTestLedger(t, c, quotas, map[string]backend.Controller{"ceph": ceph})

	ceph.set(func(s *storage) { s.hold, s.started = make(chan struct{}), make(chan struct{}) })
	done := make(chan error)
	go func() { done <- l.ReadTenant(context.Background(), "shop") }()
	<-ceph.started // the listing has its picture: old and older
	ceph.set(func(s *storage) { delete(s.vols, old.ID.String()) })
	l.Forget(old.ID)
	// Reserved while unknown: refused, as before any reading.
	_, err := l.ReserveVolume(id("ceph", "shop", "early"), 1)
	wantCode(t, err, backend.Unavailable, "not read yet")
	close(ceph.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if u := l.Usage("shop"); u.Volumes != 1 || u.Bytes != 10 {
		t.Fatalf("after a tenant reading that overlapped a delete: %d volumes, %d bytes; want 1, 10", u.Volumes, u.Bytes)
	}
	r, err := l.ReserveVolume(id("ceph", "shop", "new"), 90)
	if err != nil {
		t.Fatalf("shop's usage is known now: %v", err)
	}
	r.Commit(90)
	ceph.set(func(s *storage) { s.vols[id("ceph", "shop", "new").String()] = vol("ceph", "shop", "new", 90) })
	_, err = l.ReserveVolume(id("ceph", "shop", "over"), 1)
	wantCode(t, err, backend.ResourceExhausted, "")
	_, err = l.ReserveVolume(id("ceph", "blog", "b2"), 1)
	wantCode(t, err, backend.Unavailable, "not read yet")

	// Trusted for StaleAfter, then read again.
	ceph.set(func(s *storage) { s.hold, s.started = nil, nil })
	c.pass(11 * time.Minute)
	_, err = l.ReserveVolume(id("ceph", "shop", "late"), 1)
	wantCode(t, err, backend.Unavailable, "not read yet")
	if err := l.ReadTenant(context.Background(), "shop"); err != nil {
		t.Fatal(err)
	}
	if u := l.Usage("shop"); u.Volumes != 2 || u.Bytes != 100 {
		t.Fatalf("shop read again: %d volumes, %d bytes; want 2, 100", u.Volumes, u.Bytes)
	}

	// A full reading supersedes the tenant's: a failed tenant reading after it is not asked for.
	if err := l.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ceph.set(func(s *storage) { s.err = errors.New("monitors do not answer") })
	if err := l.ReadTenant(context.Background(), "blog"); err != nil {
		t.Fatalf("blog's usage is known from the full reading, nothing to read: %v", err)
	}
	c.pass(11 * time.Minute)
	err = l.ReadTenant(context.Background(), "shop")
	wantCode(t, err, backend.Unavailable, "monitors do not answer")
}

// A reading of a large backend takes longer than the read interval (574 s at ~15,000 RBD
// images against the 5 min default): it is bounded by the stale bound, so it ends, where a
// reading cut at the interval never would, and every next one would start over.
func TestLedgerReadingMayOutlastTheReadInterval(t *testing.T) {
	ceph := newStorage(vol("ceph", "shop", "a", 4))
	ceph.took = 100 * time.Millisecond
	l := NewLedger(map[string]backend.Controller{"ceph": ceph}, config.Tenants{Default: config.TenantQuota{MaxVolumes: 3}},
		LedgerOptions{ReadInterval: 20 * time.Millisecond, StaleAfter: time.Minute})
	if err := l.Read(context.Background(), "ceph"); err != nil {
		t.Fatalf("a reading longer than the read interval: %v", err)
	}
	if u := l.Usage("shop"); u.Volumes != 1 {
		t.Fatalf("after the reading shop has %d volumes, want 1", u.Volumes)
	}
}

// TestLedgerUnfinishedWork: an unfinished create keeps its place until a retry settles it,
// the reading finds its volume, or PendingFor passes; an unfinished expansion counts as done.
func TestLedgerUnfinishedWork(t *testing.T) {
	c := newClock()
	ceph := newStorage(vol("ceph", "shop", "a", 10))
	l := newTestLedger(t, c, config.Tenants{Default: config.TenantQuota{MaxVolumes: 2, MaxBytes: 100}}, map[string]backend.Controller{"ceph": ceph})
	if err := l.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	clone := id("ceph", "shop", "clone")
	r, err := l.ReserveVolume(clone, 30)
	if err != nil {
		t.Fatal(err)
	}
	r.Unfinished()
	_, err = l.ReserveVolume(id("ceph", "shop", "other"), 1)
	wantCode(t, err, backend.ResourceExhausted, "has 2 volumes (1 of them being created)")
	if u := l.Usage("shop"); u.Bytes != 40 {
		t.Fatalf("an unfinished clone's bytes are not counted: %d", u.Bytes)
	}
	retry, err := l.ReserveVolume(clone, 30)
	if err != nil {
		t.Fatalf("the retry of an unfinished create must take over its place: %v", err)
	}
	retry.Unfinished()

	// The storage finished it; the reading finds it: counted once.
	ceph.set(func(s *storage) { v := vol("ceph", "shop", "clone", 30); s.vols[v.ID.String()] = v })
	if err := l.Read(context.Background(), "ceph"); err != nil {
		t.Fatal(err)
	}
	if u := l.Usage("shop"); u.Volumes != 2 || u.Bytes != 40 || u.InFlight != 0 {
		t.Fatalf("a finished clone counted %+v, want 2 volumes, 40 bytes", u)
	}

	// A create the CO gave up on is forgotten after PendingFor.
	ceph.set(func(s *storage) { delete(s.vols, clone.String()) })
	if err := l.Read(context.Background(), "ceph"); err != nil {
		t.Fatal(err)
	}
	gaveUp, err := l.ReserveVolume(id("ceph", "shop", "given-up"), 5)
	if err != nil {
		t.Fatal(err)
	}
	gaveUp.Unfinished()
	c.pass(31 * time.Minute)
	if err := l.Read(context.Background(), "ceph"); err != nil { // keeps the reading fresh
		t.Fatal(err)
	}
	if u := l.Usage("shop"); u.Volumes != 1 {
		t.Fatalf("a create not retried for PendingFor still counts: %+v", u)
	}

	// An expansion whose outcome is unknown counts as done.
	a := vol("ceph", "shop", "a", 0).ID
	g, err := l.ReserveGrowth(a, 10, 60)
	if err != nil {
		t.Fatal(err)
	}
	g.Unfinished()
	if n, _ := l.VolumeBytes(a); n != 60 {
		t.Fatalf("an unfinished expansion to 60 bytes counts %d", n)
	}
	_, err = l.ReserveGrowth(a, 60, 101)
	wantCode(t, err, backend.ResourceExhausted, "41 more would pass its quota of 100 bytes (maxBytes) by 1 bytes")
}

// TestLedgerReservationsAreAtomic: 50 reservations at once against 10 places give 10.
func TestLedgerReservationsAreAtomic(t *testing.T) {
	c := newClock()
	l := newTestLedger(t, c, config.Tenants{Default: config.TenantQuota{MaxVolumes: 10}}, map[string]backend.Controller{"ceph": newStorage()})
	if err := l.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.ReserveVolume(id("ceph", "shop", fmt.Sprint(i)), 1); err == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if admitted != 10 {
		t.Fatalf("%d of 50 admitted against a quota of 10", admitted)
	}
	// A retry of an existing volume passes at the quota.
	l.reserved = map[string]map[string]*Reservation{}
	full := newStorage()
	for i := range 10 {
		v := vol("ceph", "shop", fmt.Sprint(i), 1)
		full.vols[v.ID.String()] = v
	}
	l.ctrls["ceph"] = full
	if err := l.Read(context.Background(), "ceph"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReserveVolume(id("ceph", "shop", "3"), 1); err != nil {
		t.Fatalf("an idempotent retry at the quota is refused: %v", err)
	}
}

// makingStorage is a storage that also lists the objects of volumes still being made.
type makingStorage struct {
	*storage
	making []*backend.Volume
}

func (m *makingStorage) ListAllocations(ctx context.Context) ([]*backend.Volume, error) {
	vols, err := m.ListVolumes(ctx, "")
	return append(vols, m.making...), err
}

// TestLedgerCountsVolumesBeingMade: what the storage holds of volumes still being made (a
// clone copying, an image without its record) counts after a reading, also in a controller
// that did not start them; their create's retry passes.
func TestLedgerCountsVolumesBeingMade(t *testing.T) {
	c := newClock()
	ceph := &makingStorage{storage: newStorage(vol("ceph", "shop", "done", 10)), making: []*backend.Volume{vol("ceph", "shop", "copying", 20)}}
	l := newTestLedger(t, c, config.Tenants{Default: config.TenantQuota{MaxVolumes: 2, MaxBytes: 100}}, map[string]backend.Controller{"ceph": ceph})
	if err := l.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := l.Usage("shop"); u.Volumes != 2 || u.Bytes != 30 {
		t.Fatalf("a volume being made is not counted: %+v", u)
	}
	_, err := l.ReserveVolume(id("ceph", "shop", "third"), 1)
	wantCode(t, err, backend.ResourceExhausted, "has 2 volumes, its quota is 2")
	if _, err := l.ReserveVolume(id("ceph", "shop", "copying"), 20); err != nil {
		t.Fatalf("the retry of the create under way: %v", err)
	}

	// A clone this controller started, listed while copying at 0 bytes (CephFS): its
	// requested bytes still count after the reading, once its volume.
	cephfs := &makingStorage{storage: newStorage()}
	m := newTestLedger(t, c, config.Tenants{Default: config.TenantQuota{MaxVolumes: 5, MaxBytes: 100}}, map[string]backend.Controller{"cephfs": cephfs})
	if err := m.ReadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := m.ReserveVolume(id("cephfs", "shop", "clone"), 40)
	if err != nil {
		t.Fatal(err)
	}
	r.Unfinished()
	cephfs.making = []*backend.Volume{vol("cephfs", "shop", "clone", 0)}
	if err := m.Read(context.Background(), "cephfs"); err != nil {
		t.Fatal(err)
	}
	if u := m.Usage("shop"); u.Volumes != 1 || u.Bytes != 40 {
		t.Fatalf("a copying clone listed at 0 bytes counts %+v, want 1 volume of 40 bytes", u)
	}
	cephfs.making = nil
	cephfs.set(func(s *storage) { v := vol("cephfs", "shop", "clone", 40); s.vols[v.ID.String()] = v })
	if err := m.Read(context.Background(), "cephfs"); err != nil {
		t.Fatal(err)
	}
	if u := m.Usage("shop"); u.Volumes != 1 || u.Bytes != 40 || u.InFlight != 0 {
		t.Fatalf("the finished clone counts %+v, want 1 volume of 40 bytes", u)
	}
}

func TestLedgerNeeded(t *testing.T) {
	for _, tc := range []struct {
		quotas config.Tenants
		want   bool
	}{
		{config.Tenants{}, false},
		{config.Tenants{Overrides: map[string]config.TenantQuota{"shop": {}}}, false},
		{config.Tenants{Default: config.TenantQuota{MaxBytes: 1}}, true},
		{config.Tenants{Overrides: map[string]config.TenantQuota{"shop": {MaxVolumes: 1}}}, true},
	} {
		if got := NewLedger(nil, tc.quotas, LedgerOptions{}).Needed(); got != tc.want {
			t.Errorf("Needed() with %+v = %v, want %v", tc.quotas, got, tc.want)
		}
	}
}

func TestLedgerOptionsValidate(t *testing.T) {
	if err := (LedgerOptions{}).Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	if err := (LedgerOptions{ReadInterval: 20 * time.Minute}).Validate(); err == nil || !strings.Contains(err.Error(), "must exceed the quota read interval 20m0s") {
		t.Fatalf("a read interval past the default stale bound: %v", err)
	}
	if err := (LedgerOptions{ReadInterval: time.Minute, StaleAfter: time.Minute}).Validate(); err == nil {
		t.Fatal("a stale bound equal to the read interval passes")
	}
}
