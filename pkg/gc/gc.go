// Package gc finds what shiphold left on the storage that nothing uses any more, and removes
// it through the backends' own paths: volumes no PV references, record-less volumes, the
// trash entries and temporary snapshots of deletes, and export clients no node has.
package gc

import (
	"context"
	"fmt"
	"sort"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Kinds of candidate besides the backends' own leftover kinds ("trash entry", ...).
const (
	KindUnreferenced = "unreferenced volume"
	KindRecordless   = "record-less volume"
	KindStaleClient  = "stale export client"
	// KindTemporarySnapshot is the RBD backend's leftover kind for clone snapshots.
	KindTemporarySnapshot = "temporary snapshot"
)

// Candidate is one thing gc would remove, and why.
type Candidate struct {
	Backend, Tenant, Kind, Name, Why string
	// volume is set for volumes (removed by DeleteVolume) and export clients.
	volume *volid.Volume
	client string
}

// RecordlessLister lists the objects named like a backend's volumes that have no request
// record, and so are no volume (RBD images; the other kinds list such objects as volumes).
type RecordlessLister interface {
	ListRecordless(ctx context.Context) ([]*backend.Volume, error)
}

// ClientRemover takes one client address off a volume's export, by the backend's rules.
type ClientRemover interface {
	RemoveExportClient(ctx context.Context, id volid.Volume, addr string) error
}

// Finder looks for candidates on the backends; Cluster is nil when no cluster was given,
// and then no volume counts as unreferenced.
type Finder struct {
	Backends map[string]backend.Controller
	Cluster  *Cluster
	// Tenant limits the candidates to one tenant's, when set.
	Tenant string
}

// Find lists every candidate, backend by backend; a backend that cannot be read is an error
// and the others are still listed.
func (f *Finder) Find(ctx context.Context) ([]Candidate, []error) {
	var out []Candidate
	var errs []error
	for _, name := range sortedNames(f.Backends) {
		c := f.Backends[name]
		for _, find := range []func(context.Context, backend.Controller) ([]Candidate, error){
			f.volumes, leftovers, f.staleClients,
		} {
			found, err := find(ctx, c)
			if err != nil {
				errs = append(errs, fmt.Errorf("backend %s: %w", name, err))
			}
			for _, c := range found {
				if f.Tenant == "" || c.Tenant == f.Tenant {
					out = append(out, c)
				}
			}
		}
	}
	return out, errs
}

// volumes finds the volumes no PV references (with a cluster) and the record-less ones.
func (f *Finder) volumes(ctx context.Context, c backend.Controller) ([]Candidate, error) {
	vols, err := c.ListVolumes(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []Candidate
	recorded := map[string]bool{}
	for _, v := range vols {
		recorded[v.ID.String()] = true
		if f.Cluster == nil {
			continue
		}
		if why := f.Cluster.References(v); why == "" {
			out = append(out, volumeCandidate(v.ID, KindUnreferenced, "no PersistentVolume or VolumeAttachment names it"))
		}
	}
	rl, ok := c.(RecordlessLister)
	if !ok {
		return out, nil
	}
	bare, err := rl.ListRecordless(ctx)
	if err != nil {
		return out, fmt.Errorf("list record-less volumes: %w", err)
	}
	for _, v := range bare {
		if recorded[v.ID.String()] || (f.Cluster != nil && f.Cluster.References(v) != "") {
			continue
		}
		out = append(out, volumeCandidate(v.ID, KindRecordless, "named like shiphold's but without its request record (a create that stopped)"))
	}
	return out, nil
}

func volumeCandidate(id volid.Volume, kind, why string) Candidate {
	return Candidate{Backend: id.Backend, Tenant: id.Tenant, Kind: kind, Name: id.String(), Why: why, volume: &id}
}

// leftovers lists what the backend's deletes left for it to remove.
func leftovers(ctx context.Context, c backend.Controller) ([]Candidate, error) {
	col, ok := c.(backend.Collector)
	if !ok {
		return nil, nil
	}
	found, err := col.Leftovers(ctx)
	var out []Candidate
	for _, l := range found {
		out = append(out, Candidate{Backend: l.Backend, Tenant: l.Tenant, Kind: l.Kind, Name: l.Name, Why: l.State})
	}
	if err != nil {
		err = fmt.Errorf("leftovers: %w", err)
	}
	return out, err
}

// staleClients finds export clients no node has: with a cluster, addresses no Node reports;
// without one, the clients no publish record accounts for.
func (f *Finder) staleClients(ctx context.Context, c backend.Controller) ([]Candidate, error) {
	aud, ok := c.(backend.ExportAuditor)
	if !ok {
		return nil, nil
	}
	exports, err := aud.ExportClients(ctx)
	if err != nil {
		return nil, fmt.Errorf("export clients: %w", err)
	}
	var out []Candidate
	for _, e := range exports {
		clients, why := e.Stale, "no publish record accounts for it"
		if f.Cluster != nil {
			clients, why = f.Cluster.unknownAddrs(e.Clients), "no Node has this address"
		}
		for _, cl := range clients {
			id := e.Volume
			out = append(out, Candidate{Backend: id.Backend, Tenant: id.Tenant, Kind: KindStaleClient,
				Name: fmt.Sprintf("%s on export %d (%s)", cl, e.ExportID, id), Why: why, volume: &id, client: cl})
		}
	}
	return out, nil
}

// Result is the outcome of removing one candidate.
type Result struct {
	Candidate
	// State is what a leftover still is after its collection ("purge queued"); "" when it
	// is gone.
	State string
	Err   error
}

// SnapshotCollector removes one tenant's temporary snapshots no clone needs any more.
type SnapshotCollector interface {
	CollectSnapshots(ctx context.Context, tenant string) ([]backend.Leftover, error)
}

// Remove removes the candidates through the backends: DeleteVolume for volumes (which keeps
// its rules, e.g. refusing an image in use), Collect and CollectSnapshots for leftovers, the
// backend's own client removal for export clients.
func Remove(ctx context.Context, ctrls map[string]backend.Controller, cands []Candidate) []Result {
	out := make([]Result, 0, len(cands))
	collected := map[string]*collection{}
	for _, cand := range cands {
		c := ctrls[cand.Backend]
		r := Result{Candidate: cand}
		switch {
		case c == nil:
			r.Err = fmt.Errorf("backend %q is not configured", cand.Backend)
		case cand.Kind == KindUnreferenced || cand.Kind == KindRecordless:
			r.Err = c.DeleteVolume(ctx, *cand.volume, nil)
		case cand.Kind == KindStaleClient:
			r.Err = removeClient(ctx, c, cand)
		default:
			r.State, r.Err = collect(ctx, cand, c, collected)
		}
		out = append(out, r)
	}
	return out
}

func removeClient(ctx context.Context, c backend.Controller, cand Candidate) error {
	r, ok := c.(ClientRemover)
	if !ok {
		return fmt.Errorf("backend %s cannot remove export clients", cand.Backend)
	}
	return r.RemoveExportClient(ctx, *cand.volume, cand.client)
}

// collection is what one sweep of a backend left.
type collection struct {
	left []backend.Leftover
	err  error
}

// collect runs a backend's sweep once for all its leftovers of a kind (the snapshot sweep
// of the candidate's tenant for temporary snapshots, Collect for the rest) and says what
// the candidate still is.
func collect(ctx context.Context, cand Candidate, c backend.Controller, done map[string]*collection) (string, error) {
	snaps := cand.Kind == KindTemporarySnapshot
	key := cand.Backend + "/trash"
	if snaps {
		key = cand.Backend + "/snapshots/" + cand.Tenant
	}
	got, ok := done[key]
	if !ok {
		got = &collection{}
		col, isCol := c.(backend.Collector)
		sc, isSC := c.(SnapshotCollector)
		switch {
		case snaps && isSC:
			got.left, got.err = sc.CollectSnapshots(ctx, cand.Tenant)
		case !snaps && isCol:
			got.left, got.err = col.Collect(ctx)
		default:
			got.err = fmt.Errorf("backend %s cannot collect a %s", cand.Backend, cand.Kind)
		}
		done[key] = got
	}
	if got.err != nil {
		return "", got.err
	}
	for _, l := range got.left {
		if l.Kind == cand.Kind && l.Name == cand.Name {
			return l.State, nil
		}
	}
	return "", nil
}

func sortedNames(m map[string]backend.Controller) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
