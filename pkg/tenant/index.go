package tenant

import (
	"context"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// DefaultFullReadEvery is how many readings of a backend with an AllocationIndex pass
// between two that read every volume again.
const DefaultFullReadEvery = 12

// AllocationIndex is a backend that lists where its allocations may be from the storage's
// directories (RBD namespaces and image directories, CephFS subvolume lists) without
// reading any, and reads the sizes of named ones: a reading then reads only the volumes that
// appeared since the last, where ListAllocations reads every one (an image open, a
// subvolume info each: ~80 s at 10,000 RBD volumes).
type AllocationIndex interface {
	// AllocationIDs lists the IDs of every object that may be one of the backend's
	// allocations; another backend's objects in the same places may be among them.
	AllocationIDs(ctx context.Context) ([]volid.Volume, error)
	// AllocationsOf reads those of ids that are the backend's allocations, at their
	// allocated size; gone objects and other backends' are left out.
	AllocationsOf(ctx context.Context, ids []volid.Volume) ([]*backend.Volume, error)
	// AdoptedAllocations reads the volumes adopted in place, at their size: they lie outside
	// the directories the index lists (and shipholdctl import adopts them outside this
	// controller), so every reading reads them all.
	AdoptedAllocations(ctx context.Context) ([]*backend.Volume, error)
}

// reading is what one reading of a backend found.
type reading struct {
	vols []*backend.Volume // read now, at their size
	// listed holds the keys of every object listed, for a reading that read only the new
	// ones (the book's entries for the others stand); nil for a reading of every volume.
	listed map[string]bool
	// foreign holds the listed keys read and found not to be the backend's allocations.
	foreign map[string]bool
}

// readBackend reads every allocation of c; when c has an AllocationIndex and this is not a
// full reading, it lists them and reads only those the book does not hold at a size yet.
func (l *Ledger) readBackend(ctx context.Context, c backend.Controller, b *book, full bool) (*reading, error) {
	ix, ok := c.(AllocationIndex)
	if !ok {
		vols, err := listAllocations(ctx, c)
		return &reading{vols: vols}, err
	}
	ids, err := ix.AllocationIDs(ctx)
	if err != nil {
		return nil, err
	}
	adopted, err := ix.AdoptedAllocations(ctx)
	if err != nil {
		return nil, err
	}
	r := &reading{foreign: map[string]bool{}}
	unknown := ids
	if !full {
		r.listed, unknown = l.unknown(b, ids, r.foreign)
	}
	if len(unknown) > 0 {
		if r.vols, err = ix.AllocationsOf(ctx, unknown); err != nil {
			return nil, err
		}
	}
	found := make(map[string]bool, len(r.vols))
	for _, v := range r.vols {
		found[bookKey(v.ID)] = true
	}
	for _, id := range unknown {
		if k := bookKey(id); !found[k] {
			r.foreign[k] = true
		}
	}
	r.vols = append(r.vols, adopted...)
	return r, nil
}

// unknown sorts listed ids into those to read (not in the book, or there at 0 bytes: a clone
// still copying) and those known to be another backend's, and returns the keys of all.
func (l *Ledger) unknown(b *book, ids []volid.Volume, foreign map[string]bool) (map[string]bool, []volid.Volume) {
	listed := make(map[string]bool, len(ids))
	var unknown []volid.Volume
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		k := bookKey(id)
		listed[k] = true
		if e, ok := b.vols[k]; b.foreign[k] {
			foreign[k] = true
		} else if !ok || e.bytes == 0 {
			unknown = append(unknown, id)
		}
	}
	return listed, unknown
}

// fresh is the book a reading makes: what it read, the entries it listed and did not read
// again, and this controller's changes made while it ran on top; b.mu is held by the caller.
func (r *reading) fresh(b *book, changes []change) *book {
	fresh := newBook()
	for k, e := range b.vols {
		if r.listed[k] {
			fresh.put(k, e)
		}
	}
	for _, v := range r.vols {
		fresh.put(bookKey(v.ID), entry{tenant: v.ID.Tenant, bytes: v.CapacityBytes})
	}
	for _, ch := range changes {
		fresh.apply(ch)
	}
	for k := range r.foreign {
		if !fresh.has(k) {
			fresh.foreign[k] = true
		}
	}
	return fresh
}
