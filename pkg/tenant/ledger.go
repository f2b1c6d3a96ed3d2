package tenant

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Defaults of LedgerOptions.
const (
	DefaultReadInterval = 5 * time.Minute
	DefaultStaleAfter   = 15 * time.Minute
	DefaultPendingFor   = 30 * time.Minute
)

// LedgerOptions tune a Ledger; zero values take the defaults.
type LedgerOptions struct {
	// ReadInterval is the time between two readings of one backend. A reading may take
	// longer (minutes at 15,000 RBD images): it is bounded by StaleAfter, past which its
	// result would be stale anyway, and the next starts when it ends.
	ReadInterval time.Duration
	// StaleAfter bounds how old a backend's last reading may be for tenants with volumes
	// there; past it their creates are refused (Unavailable) until the backend answers.
	StaleAfter time.Duration
	// PendingFor is how long an unfinished create (a clone still copying, a call the
	// storage may still complete) keeps its place after its last attempt.
	PendingFor time.Duration
	// FullReadEvery is how many readings of a backend with an AllocationIndex pass between
	// two that read every volume again (sizes changed outside this controller).
	FullReadEvery int
	Now           func() time.Time
}

// Validate refuses a stale bound that a healthy backend's readings could not keep: it must
// exceed the read interval (zero values count as their defaults).
func (o LedgerOptions) Validate() error {
	read, stale := o.ReadInterval, o.StaleAfter
	if read <= 0 {
		read = DefaultReadInterval
	}
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	if stale <= read {
		return fmt.Errorf("the quota stale bound %s must exceed the quota read interval %s, or every reading is stale before the next", stale, read)
	}
	return nil
}

// Ledger keeps what every tenant holds on every backend, so that a quota check is a lookup:
// each backend's volumes and their allocated sizes, read from the storage in the background
// and kept current by this controller's own creates, expansions and deletes, and a table of
// reservations for the work in flight. Admission and reservation happen under one lock, so
// two creates of a tenant cannot both take its last place; no check ever lists storage.
type Ledger struct {
	ctrls  map[string]backend.Controller
	quotas config.Tenants
	opts   LedgerOptions

	mu    sync.Mutex
	books map[string]*book
	// reserved holds each tenant's reservations by backend and volume hash.
	reserved map[string]map[string]*Reservation
}

// NewLedger returns a ledger of ctrls that has read nothing yet: until a backend's first
// reading, tenants with a quota cannot create volumes (Unavailable).
func NewLedger(ctrls map[string]backend.Controller, quotas config.Tenants, opts LedgerOptions) *Ledger {
	if opts.ReadInterval <= 0 {
		opts.ReadInterval = DefaultReadInterval
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = DefaultStaleAfter
	}
	if opts.PendingFor <= 0 {
		opts.PendingFor = DefaultPendingFor
	}
	if opts.FullReadEvery <= 0 {
		opts.FullReadEvery = DefaultFullReadEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Ledger{ctrls: ctrls, quotas: quotas, opts: opts, books: map[string]*book{}, reserved: map[string]map[string]*Reservation{}}
	for name := range ctrls {
		l.books[name] = newBook()
	}
	return l
}

// Limits reports whether the tenant has a quota at all.
func (l *Ledger) Limits(tenant string) bool {
	q := l.quotas.QuotaFor(tenant)
	return q.MaxVolumes > 0 || q.MaxBytes > 0
}

// Needed reports whether any tenant has a quota; without one, nothing needs the readings.
func (l *Ledger) Needed() bool {
	if l.quotas.Default != (config.TenantQuota{}) {
		return true
	}
	for _, q := range l.quotas.Overrides {
		if q != (config.TenantQuota{}) {
			return true
		}
	}
	return false
}

// Start reads every backend at once and then every ReadInterval, each backend on its own
// so that one that hangs delays no other, until ctx ends. The channel closes when every
// backend's first reading has ended, successfully or not.
func (l *Ledger) Start(ctx context.Context) <-chan struct{} {
	first := make(chan struct{})
	var wg sync.WaitGroup
	for _, name := range l.backendNames() {
		wg.Add(1)
		go func(name string) {
			t := time.NewTicker(l.opts.ReadInterval)
			defer t.Stop()
			l.readLogged(ctx, name)
			wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					l.readLogged(ctx, name)
				}
			}
		}(name)
	}
	go func() { wg.Wait(); close(first) }()
	return first
}

// ReadAll reads every backend once, concurrently, and returns the first error.
func (l *Ledger) ReadAll(ctx context.Context) error {
	names := l.backendNames()
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.Read(ctx, name) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (l *Ledger) readLogged(ctx context.Context, name string) {
	l.mu.Lock()
	failing := l.books[name].readErr != nil
	l.mu.Unlock()
	err := l.Read(ctx, name)
	switch {
	case err != nil && !failing:
		klog.FromContext(ctx).Error(err, "Cannot read tenant usage; the last reading counts until it is older than the stale bound", "backend", name, "staleAfter", l.opts.StaleAfter)
	case err == nil && failing:
		klog.FromContext(ctx).Info("Tenant usage read again", "backend", name)
	}
}

// Read reads one backend's volumes, bounded by StaleAfter, and replaces what the ledger
// knew of it; a backend with an AllocationIndex has only its new volumes read, and all of
// them every FullReadEvery readings. Changes this controller made while the reading ran are
// applied again on top, so that a volume created or deleted meanwhile is neither lost nor
// brought back.
func (l *Ledger) Read(ctx context.Context, name string) error {
	l.mu.Lock()
	b := l.books[name]
	l.mu.Unlock()
	if b == nil {
		return fmt.Errorf("backend %q is not in the ledger", name)
	}
	b.readMu.Lock()
	defer b.readMu.Unlock()
	l.mu.Lock()
	b.changes, b.reading = nil, true
	full := b.readAt.IsZero() || b.readings%l.opts.FullReadEvery == 0
	l.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, l.opts.StaleAfter)
	found, err := l.readBackend(rctx, l.ctrls[name], b, full)
	cancel()

	l.mu.Lock()
	defer l.mu.Unlock()
	changes := b.changes
	b.changes, b.reading = nil, false
	if err != nil {
		b.readErr = fmt.Errorf("listing volumes on backend %q: %w", name, err)
		return b.readErr
	}
	fresh := found.fresh(b, changes)
	b.vols, b.tally, b.foreign = fresh.vols, fresh.tally, fresh.foreign
	b.readAt, b.readErr = l.opts.Now(), nil
	clear(b.tenantReadAt) // this reading is as fresh as any of one tenant
	b.readings++
	l.dropFinishedPending(name, b)
	return nil
}

// AllocationLister is a backend that can list, besides its volumes, the objects of volumes
// still being made (a CephFS clone copying, an RBD image whose record is not written yet),
// which ListVolumes leaves out but which hold a place under the tenant's quota.
type AllocationLister interface {
	ListAllocations(ctx context.Context) ([]*backend.Volume, error)
}

func listAllocations(ctx context.Context, c backend.Controller) ([]*backend.Volume, error) {
	if al, ok := c.(AllocationLister); ok {
		return al.ListAllocations(ctx)
	}
	return c.ListVolumes(ctx, "")
}

// dropFinishedPending forgets unfinished creates whose volume the reading found at its full
// size: the book counts them now. A CephFS clone still copying is listed at 0 bytes, so its
// reservation keeps counting the bytes it will have.
func (l *Ledger) dropFinishedPending(name string, b *book) {
	for tenant, rs := range l.reserved {
		for k, r := range rs {
			if e, ok := b.vols[r.bookKey()]; ok && r.backend == name && !r.grow && !r.pendingSince.IsZero() && e.bytes >= r.bytes {
				delete(rs, k)
			}
		}
		if len(rs) == 0 {
			delete(l.reserved, tenant)
		}
	}
}

func (l *Ledger) backendNames() []string {
	names := make([]string, 0, len(l.ctrls))
	for name := range l.ctrls {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// VolumeBytes is the allocated size the ledger knows of a volume.
func (l *Ledger) VolumeBytes(id volid.Volume) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.books[id.Backend]
	if b == nil {
		return 0, false
	}
	e, ok := b.vols[bookKey(id)]
	return e.bytes, ok
}

// Forget drops a deleted volume, and any unfinished create of it.
func (l *Ledger) Forget(id volid.Volume) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.books[id.Backend]; b != nil {
		b.change(bookKey(id), entry{}, true)
	}
	r := &Reservation{backend: id.Backend, tenant: id.Tenant, hash: id.Hash}
	l.unreserve(r)
}

// Usage is what the ledger counts for a tenant now: its volumes on every backend and the
// reservations in flight (InFlight of the volumes are being created).
func (l *Ledger) Usage(tenant string) *Usage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counted(tenant)
}

// counted adds up a tenant's books and reservations; l.mu is held. An unfinished create
// whose volume the book already holds counts only the bytes it may add.
func (l *Ledger) counted(tenant string) *Usage {
	u := &Usage{Tenant: tenant, ByBackend: map[string]BackendUsage{}, Quota: l.quotas.QuotaFor(tenant)}
	for name, b := range l.books {
		t := b.tally[tenant]
		u.Volumes += t.Volumes
		u.Bytes += t.Bytes
		if t.Volumes > 0 {
			u.ByBackend[name] = t
		}
	}
	now := l.opts.Now()
	for k, r := range l.reserved[tenant] {
		if !r.pendingSince.IsZero() && now.Sub(r.pendingSince) > l.opts.PendingFor {
			delete(l.reserved[tenant], k) // no attempt for that long: the CO gave up
			continue
		}
		var e entry
		inBook := false
		if b := l.books[r.backend]; b != nil {
			e, inBook = b.vols[r.bookKey()]
		}
		switch {
		case r.grow:
			u.Bytes += r.bytes
		case inBook:
			u.Bytes += max(0, r.bytes-e.bytes)
		default:
			u.Volumes++
			u.InFlight++
			u.Bytes += r.bytes
		}
	}
	return u
}

// admit checks that the tenant may add volumes and bytes; l.mu is held.
func (l *Ledger) admit(tenant string, volumes int, bytes int64) error {
	if err := l.checkFresh(tenant); err != nil {
		return err
	}
	if why := l.counted(tenant).admits(volumes, bytes); why != "" {
		return backend.Errorf(backend.ResourceExhausted, "%s", why)
	}
	return nil
}

// checkFresh refuses a quota check that rests on usage the ledger does not know (unknownOn
// on any backend); l.mu is held.
func (l *Ledger) checkFresh(tenant string) error {
	for _, name := range l.backendNames() {
		if err := l.unknownOn(tenant, name); err != nil {
			return err
		}
	}
	return nil
}

// unknownOn says why the tenant's usage on one backend is not known: the backend was never
// read, or its last reading is older than StaleAfter while the tenant has volumes or
// unfinished work there, and no reading of the tenant alone (ReadTenant) is fresher; nil
// when it is known. l.mu is held.
func (l *Ledger) unknownOn(tenant, name string) error {
	b := l.books[name]
	now := l.opts.Now()
	if at, ok := b.tenantReadAt[tenant]; ok && now.Sub(at) <= l.opts.StaleAfter {
		return nil
	}
	if b.readAt.IsZero() {
		why := "not read yet"
		if b.readErr != nil {
			why = b.readErr.Error()
		}
		return backend.Errorf(readCode(b.readErr), "tenant %q has a quota and the usage on backend %q is not known (%s); retry once the backend answers", tenant, name, why)
	}
	age := now.Sub(b.readAt)
	if age <= l.opts.StaleAfter || (b.tally[tenant].Volumes == 0 && !l.hasWorkOn(tenant, name)) {
		return nil
	}
	why := ""
	if b.readErr != nil {
		why = " (" + b.readErr.Error() + ")"
	}
	return backend.Errorf(readCode(b.readErr), "tenant %q has volumes on backend %q, whose usage was last read %s ago%s, longer than the %s the quota check trusts; retry once the backend answers",
		tenant, name, age.Round(time.Second), why, l.opts.StaleAfter)
}

// readCode is the code a quota check answers while a backend's usage is not known: the
// failed reading's own (a refused key is FAILED_PRECONDITION, as every other call answers
// it), UNAVAILABLE when the backend did not answer or was not read yet.
func readCode(err error) backend.Code {
	var se *backend.StorageError
	if errors.As(err, &se) && se.Code != backend.Internal {
		return se.Code
	}
	return backend.Unavailable
}

func (l *Ledger) hasWorkOn(tenant, name string) bool {
	for _, r := range l.reserved[tenant] {
		if r.backend == name {
			return true
		}
	}
	return false
}

// ReserveVolume admits a new volume of the tenant in id (Backend, Tenant, Hash) with the
// bytes the backend will allocate, and holds its place until the reservation settles. A
// retry of a volume that exists passes, so CreateVolume stays idempotent; a retry of an
// unfinished create takes over the place its earlier attempt holds.
func (l *Ledger) ReserveVolume(id volid.Volume, bytes int64) (*Reservation, error) {
	r := &Reservation{l: l, backend: id.Backend, tenant: id.Tenant, hash: id.Hash, bytes: bytes}
	if !l.Limits(id.Tenant) {
		return r, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.books[id.Backend]; b != nil && b.has(bookKey(id)) {
		return r, nil
	}
	if old := l.reserved[id.Tenant][r.key()]; old != nil {
		old.pendingSince = time.Time{}
		old.bytes = max(old.bytes, bytes)
		return old, nil
	}
	if err := l.admit(id.Tenant, 1, bytes); err != nil {
		return nil, err
	}
	l.reserve(r)
	return r, nil
}

// ReserveGrowth admits growing the volume id from current to bytes (allocated sizes); the
// ledger's own figure for the volume, when it has one, is taken over current.
func (l *Ledger) ReserveGrowth(id volid.Volume, current, bytes int64) (*Reservation, error) {
	r := &Reservation{l: l, backend: id.Backend, tenant: id.Tenant, hash: id.Hash, grow: true}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.books[id.Backend]; b != nil {
		if e, ok := b.vols[bookKey(id)]; ok {
			current = e.bytes
		}
	}
	r.bytes = bytes - current
	if r.bytes <= 0 || !l.Limits(id.Tenant) {
		return r, nil
	}
	if err := l.admit(id.Tenant, 0, r.bytes); err != nil {
		return nil, err
	}
	l.reserve(r)
	return r, nil
}

func (l *Ledger) reserve(r *Reservation) {
	rs := l.reserved[r.tenant]
	if rs == nil {
		rs = map[string]*Reservation{}
		l.reserved[r.tenant] = rs
	}
	rs[r.key()] = r
	r.held = true
}

func (l *Ledger) unreserve(r *Reservation) {
	if rs := l.reserved[r.tenant]; rs != nil {
		delete(rs, r.key())
		if len(rs) == 0 {
			delete(l.reserved, r.tenant)
		}
	}
	r.held = false
}

// Reservation holds a tenant's place for a create or an expansion in flight.
type Reservation struct {
	l                     *Ledger
	backend, tenant, hash string
	// bytes is the new volume's allocated size, or an expansion's growth.
	bytes int64
	grow  bool
	held  bool
	// pendingSince is set when the request returned with the work unfinished.
	pendingSince time.Time
}

func (r *Reservation) key() string {
	if r.grow {
		return r.backend + "/" + r.hash + "/grow"
	}
	return r.backend + "/" + r.hash
}

func (r *Reservation) bookKey() string { return r.tenant + "/" + r.hash }

// Commit records the volume at the allocated size the storage reported, and frees the place.
func (r *Reservation) Commit(allocated int64) {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.held {
		l.unreserve(r)
	}
	if b := l.books[r.backend]; b != nil {
		b.change(r.bookKey(), entry{tenant: r.tenant, bytes: allocated}, false)
	}
}

// Cancel frees the place of work that the storage refused and did not start.
func (r *Reservation) Cancel() {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.held {
		l.unreserve(r)
	}
}

// Unfinished settles work the storage may still complete (a clone copying, a call that
// outlived its request). A create keeps its place for PendingFor or until a retry settles
// it; an expansion counts as done, which the next reading corrects if it was not.
func (r *Reservation) Unfinished() {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !r.held {
		return
	}
	if !r.grow {
		r.pendingSince = l.opts.Now()
		return
	}
	l.unreserve(r)
	if b := l.books[r.backend]; b != nil {
		if e, ok := b.vols[r.bookKey()]; ok {
			b.change(r.bookKey(), entry{tenant: r.tenant, bytes: e.bytes + r.bytes}, false)
		}
	}
}

// book is what the ledger knows of one backend.
type book struct {
	// readMu keeps one reading of the backend at a time.
	readMu sync.Mutex
	vols   map[string]entry // by bookKey
	// keys holds each tenant's bookKeys, so that a reading of one tenant replaces its
	// entries without a scan of every tenant's.
	keys   map[string]map[string]struct{}
	tally  map[string]BackendUsage
	readAt time.Time // last successful reading; zero until the first
	// readErr is the last reading's failure, nil after a success.
	readErr error
	// While a reading runs, changes collects this controller's own changes, to apply
	// them again on top of what the listing found.
	reading bool
	changes []change
	// foreign holds the keys of listed objects read and found not to be the backend's
	// allocations, so that readings of the names alone do not read them again.
	foreign map[string]bool
	// readings counts the successful readings, for the full one every FullReadEvery.
	readings int
	// tenantReadAt holds when ReadTenant last read a tenant alone, since the last full
	// reading; tenantReads the readings of one tenant running now.
	tenantReadAt map[string]time.Time
	tenantReads  map[string]*tenantReading
}

type entry struct {
	tenant string
	bytes  int64
}

type change struct {
	key   string
	entry entry
	gone  bool
}

func newBook() *book {
	return &book{vols: map[string]entry{}, keys: map[string]map[string]struct{}{}, tally: map[string]BackendUsage{}, foreign: map[string]bool{},
		tenantReadAt: map[string]time.Time{}, tenantReads: map[string]*tenantReading{}}
}

func bookKey(id volid.Volume) string { return id.Tenant + "/" + id.Hash }

func (b *book) has(key string) bool { _, ok := b.vols[key]; return ok }

// change is this controller's own change to the book: applied, and recorded for the
// readings running now to apply again on top of what they find.
func (b *book) change(key string, e entry, gone bool) {
	ch := change{key: key, entry: e, gone: gone}
	b.apply(ch)
	if b.reading {
		b.changes = append(b.changes, ch)
	}
	if tr := b.tenantReads[tenantOfKey(key)]; tr != nil {
		tr.changes = append(tr.changes, ch)
	}
}

// apply puts or removes one entry, as the change says.
func (b *book) apply(ch change) {
	if ch.gone {
		b.remove(ch.key)
	} else {
		b.put(ch.key, ch.entry)
	}
}

// tenantOfKey is the tenant of a bookKey.
func tenantOfKey(key string) string {
	tenant, _, _ := strings.Cut(key, "/")
	return tenant
}

func (b *book) put(key string, e entry) {
	b.remove(key)
	b.vols[key] = e
	if b.keys[e.tenant] == nil {
		b.keys[e.tenant] = map[string]struct{}{}
	}
	b.keys[e.tenant][key] = struct{}{}
	t := b.tally[e.tenant]
	t.Volumes++
	t.Bytes += e.bytes
	b.tally[e.tenant] = t
}

func (b *book) remove(key string) {
	old, ok := b.vols[key]
	if !ok {
		return
	}
	delete(b.vols, key)
	if delete(b.keys[old.tenant], key); len(b.keys[old.tenant]) == 0 {
		delete(b.keys, old.tenant)
	}
	t := b.tally[old.tenant]
	t.Volumes--
	t.Bytes -= old.bytes
	if t.Volumes == 0 {
		delete(b.tally, old.tenant)
	} else {
		b.tally[old.tenant] = t
	}
}
