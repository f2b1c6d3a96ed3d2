package onefssim

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Export is one NFS export as the simulator stores it. Fields not listed
// here are served with OneFS defaults (see exportDefaults).
type Export struct {
	ID               int             `json:"id"`
	Paths            []string        `json:"paths"`
	Zone             string          `json:"zone"`
	Description      string          `json:"description"`
	Clients          []string        `json:"clients"`
	RootClients      []string        `json:"root_clients"`
	ReadOnlyClients  []string        `json:"read_only_clients"`
	ReadWriteClients []string        `json:"read_write_clients"`
	ReadOnly         bool            `json:"read_only"`
	AllDirs          bool            `json:"all_dirs"`
	MapRoot          json.RawMessage `json:"map_root,omitempty"`
	MapNonRoot       json.RawMessage `json:"map_non_root,omitempty"`
	MapFailure       json.RawMessage `json:"map_failure,omitempty"`
	MapAll           json.RawMessage `json:"map_all,omitempty"`
	SecurityFlavors  []string        `json:"security_flavors,omitempty"`
}

// Quota is one SmartQuotas domain.
type Quota struct {
	ID                        string          `json:"id"`
	Path                      string          `json:"path"`
	Type                      string          `json:"type"`
	Container                 bool            `json:"container"`
	Enforced                  bool            `json:"enforced"`
	IncludeSnapshots          bool            `json:"include_snapshots"`
	ThresholdsIncludeOverhead bool            `json:"thresholds_include_overhead"`
	Hard                      *int64          `json:"hard"`
	Soft                      *int64          `json:"soft"`
	Advisory                  *int64          `json:"advisory"`
	SoftGrace                 *int64          `json:"soft_grace"`
	Persona                   json.RawMessage `json:"persona,omitempty"`
}

// Snapshot is one point-in-time copy; its data lives in <root>/.snapshot/<name>/.
type Snapshot struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Path    string `json:"path"`
	Created int64  `json:"created"`
	Expires *int64 `json:"expires"`
}

// userAttr is a user-defined metadata attribute of a namespace object.
type userAttr struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type state struct {
	NextExportID   int                   `json:"next_export_id"`
	NextQuotaSeq   uint64                `json:"next_quota_seq"`
	NextSnapshotID int64                 `json:"next_snapshot_id"`
	Exports        map[int]*Export       `json:"exports"`
	Quotas         map[string]*Quota     `json:"quotas"`
	Snapshots      map[int64]*Snapshot   `json:"snapshots"`
	Metadata       map[string][]userAttr `json:"metadata"` // key: /ifs/... path
	// ExportDefaults is each zone's default export settings (PUT settings/export): the
	// user mappings an export made without its own take.
	ExportDefaults map[string]map[string]json.RawMessage `json:"export_defaults,omitempty"`
	Generation     uint64                                `json:"generation"`

	dir string
}

func newState() *state {
	return &state{
		NextExportID:   1,
		NextQuotaSeq:   1,
		NextSnapshotID: 1,
		Exports:        map[int]*Export{},
		Quotas:         map[string]*Quota{},
		Snapshots:      map[int64]*Snapshot{},
		Metadata:       map[string][]userAttr{},
		ExportDefaults: map[string]map[string]json.RawMessage{},
	}
}

func loadState(dir string) (*state, error) {
	st := newState()
	st.dir = dir
	if dir == "" {
		return st, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, err
	}
	if st.Exports == nil {
		st.Exports = map[int]*Export{}
	}
	if st.Quotas == nil {
		st.Quotas = map[string]*Quota{}
	}
	if st.Snapshots == nil {
		st.Snapshots = map[int64]*Snapshot{}
	}
	if st.Metadata == nil {
		st.Metadata = map[string][]userAttr{}
	}
	if st.ExportDefaults == nil {
		st.ExportDefaults = map[string]map[string]json.RawMessage{}
	}
	return st, nil
}

// save persists the state (if a StateDir is configured) and bumps the
// generation used for digests. Callers hold s.mu.
func (st *state) save() error {
	st.Generation++
	if st.dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(st.dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(st.dir, "state.json"))
}

func (s *Server) exportListLocked() []Export {
	ids := make([]int, 0, len(s.st.Exports))
	for id := range s.st.Exports {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	out := make([]Export, 0, len(ids))
	for _, id := range ids {
		e := *s.st.Exports[id]
		e.Paths = append([]string(nil), e.Paths...)
		e.Clients = append([]string(nil), e.Clients...)
		e.RootClients = append([]string(nil), e.RootClients...)
		e.ReadOnlyClients = append([]string(nil), e.ReadOnlyClients...)
		e.ReadWriteClients = append([]string(nil), e.ReadWriteClients...)
		// The list shows the mappings in effect, so the NFS server squashes as OneFS would.
		e.MapRoot = s.mapping(&e, "map_root", e.MapRoot, defaultMapRoot)
		e.MapAll = s.mapping(&e, "map_all", e.MapAll, nil)
		out = append(out, e)
	}
	return out
}
