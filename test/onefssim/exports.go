package onefssim

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var defaultMapping = json.RawMessage(`{"enabled":false,"primary_group":{},"secondary_groups":[],"user":{"id":"USER:nobody"}}`)
var defaultMapRoot = json.RawMessage(`{"enabled":true,"primary_group":{},"secondary_groups":[],"user":{"id":"USER:nobody"}}`)

// exportMappings are the user mappings an export inherits from its zone's default export
// settings when it sets none itself.
var exportMappings = []string{"map_root", "map_non_root", "map_failure", "map_all"}

// mapping is the user mapping field of e in effect: its own, else its zone's default
// setting, else OneFS's factory default def. Callers hold s.mu.
func (s *Server) mapping(e *Export, field string, own, def json.RawMessage) json.RawMessage {
	if len(own) > 0 && string(own) != "null" {
		return own
	}
	if z := s.st.ExportDefaults[e.Zone][field]; len(z) > 0 && string(z) != "null" {
		return z
	}
	return def
}

// handleExportSettings serves a zone's default export settings: GET shows the user
// mappings, PUT changes them for every export that has none of its own (as OneFS's
// `isi nfs settings export modify` does).
func (s *Server) handleExportSettings(w http.ResponseWriter, r *http.Request) {
	if s.exportSettingsLocked(w, r) {
		s.exportsChanged() // the NFS server squashes anew
	}
}

// exportSettingsLocked answers a settings request under s.mu; it reports a change.
func (s *Server) exportSettingsLocked(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	zone, _, ok := s.zoneOf(r)
	if !ok {
		writeError(w, 404, "AEC_NOT_FOUND", "zone", "Access zone '"+zone+"' not found")
		return false
	}
	switch r.Method {
	case http.MethodGet:
		probe := &Export{Zone: zone}
		out := map[string]any{"zone": zone}
		for _, f := range exportMappings {
			def := defaultMapping
			if f == "map_root" {
				def = defaultMapRoot
			}
			out[f] = s.mapping(probe, f, nil, def)
		}
		writeJSON(w, 200, map[string]any{"settings": out})
	case http.MethodPut:
		var raw map[string]json.RawMessage
		if !decodeBody(w, r, &raw) {
			return false
		}
		if s.st.ExportDefaults[zone] == nil {
			s.st.ExportDefaults[zone] = map[string]json.RawMessage{}
		}
		for _, f := range exportMappings {
			if v, ok := raw[f]; ok {
				s.st.ExportDefaults[zone][f] = append(json.RawMessage(nil), v...)
			}
		}
		_ = s.st.save()
		writeNoContent(w)
		return true
	default:
		methodNotAllowed(w, r)
	}
	return false
}

// exportJSON renders an export with the OneFS default NFS tunables.
func (s *Server) exportJSON(e *Export) map[string]any {
	nz := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	flav := e.SecurityFlavors
	if len(flav) == 0 {
		flav = []string{"unix"}
	}
	out := map[string]any{
		"all_dirs":                e.AllDirs,
		"block_size":              8192,
		"can_set_time":            true,
		"case_insensitive":        false,
		"case_preserving":         true,
		"chown_restricted":        false,
		"clients":                 nz(e.Clients),
		"commit_asynchronous":     false,
		"conflicting_paths":       s.conflictingPaths(e),
		"description":             e.Description,
		"directory_transfer_size": 131072,
		"encoding":                "DEFAULT",
		"id":                      e.ID,
		"link_max":                32767,
		"map_failure":             s.mapping(e, "map_failure", e.MapFailure, defaultMapping),
		"map_full":                true,
		"map_lookup_uid":          false,
		"map_non_root":            s.mapping(e, "map_non_root", e.MapNonRoot, defaultMapping),
		"map_retry":               true,
		"map_root":                s.mapping(e, "map_root", e.MapRoot, defaultMapRoot),
		"max_file_size":           int64(9223372036854775807),
		"name_max_size":           255,
		"no_truncate":             false,
		"paths":                   nz(e.Paths),
		"read_only":               e.ReadOnly,
		"read_only_clients":       nz(e.ReadOnlyClients),
		"read_transfer_max_size":  1048576,
		"read_transfer_multiple":  512,
		"read_transfer_size":      131072,
		"read_write_clients":      nz(e.ReadWriteClients),
		"readdirplus":             true,
		"readdirplus_prefetch":    10,
		"return_32bit_file_ids":   false,
		"root_clients":            nz(e.RootClients),
		"security_flavors":        flav,
		"setattr_asynchronous":    false,
		"snapshot":                "-",
		"symlinks":                true,
		"time_delta":              1e-09,
		"unresolved_clients":      []string{},
		"write_datasync_action":   "DATASYNC",
		"write_datasync_reply":    "DATASYNC",
		"write_filesync_action":   "FILESYNC",
		"write_filesync_reply":    "FILESYNC",
		"write_transfer_max_size": 1048576,
		"write_transfer_multiple": 512,
		"write_transfer_size":     524288,
		"write_unstable_action":   "UNSTABLE",
		"write_unstable_reply":    "UNSTABLE",
		"zone":                    e.Zone,
	}
	if m := s.mapping(e, "map_all", e.MapAll, nil); m != nil {
		out["map_all"] = m
	}
	return out
}

func exportNotFound(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "id", "Export id "+id+" does not exist")
}

func (s *Server) zoneOf(r *http.Request) (string, string, bool) {
	z := r.URL.Query().Get("zone")
	if z == "" {
		z = "System"
	}
	p, ok := s.opts.Zones[z]
	return z, p, ok
}

// applyExportFields applies the JSON fields of a POST/PUT body to e.
func applyExportFields(e *Export, raw map[string]json.RawMessage) (string, error) {
	for k, v := range raw {
		var err error
		switch k {
		case "paths":
			err = json.Unmarshal(v, &e.Paths)
		case "clients":
			err = json.Unmarshal(v, &e.Clients)
		case "root_clients":
			err = json.Unmarshal(v, &e.RootClients)
		case "read_only_clients":
			err = json.Unmarshal(v, &e.ReadOnlyClients)
		case "read_write_clients":
			err = json.Unmarshal(v, &e.ReadWriteClients)
		case "description":
			err = json.Unmarshal(v, &e.Description)
		case "read_only":
			err = json.Unmarshal(v, &e.ReadOnly)
		case "all_dirs":
			err = json.Unmarshal(v, &e.AllDirs)
		case "security_flavors":
			err = json.Unmarshal(v, &e.SecurityFlavors)
		case "map_root":
			e.MapRoot = append(json.RawMessage(nil), v...)
		case "map_non_root":
			e.MapNonRoot = append(json.RawMessage(nil), v...)
		case "map_failure":
			e.MapFailure = append(json.RawMessage(nil), v...)
		case "map_all":
			e.MapAll = append(json.RawMessage(nil), v...)
		case "zone":
			var z string
			if err = json.Unmarshal(v, &z); err == nil && z != "" {
				e.Zone = z
			}
		default:
			// Other NFS tunables are accepted and ignored.
			var any any
			err = json.Unmarshal(v, &any)
		}
		if err != nil {
			return k, err
		}
	}
	return "", nil
}

// validateExport checks that every path exists as a directory inside the
// export's zone and that client entries are plausible.
func (s *Server) validateExport(e *Export) (field, msg string) {
	zp, ok := s.opts.Zones[e.Zone]
	if !ok {
		return "zone", "Access zone '" + e.Zone + "' not found"
	}
	if len(e.Paths) == 0 {
		return "paths", "Field: paths required at least 1 items"
	}
	for i, p := range e.Paths {
		c := path.Clean("/" + p)
		e.Paths[i] = c
		if c != zp && !strings.HasPrefix(c, zp+"/") {
			return "paths", fmt.Sprintf("Path '%s' is not within access zone '%s' base path '%s'", c, e.Zone, zp)
		}
		loc, err := resolveIfs(c)
		if err != nil {
			return "paths", err.Error()
		}
		if fi, err := s.root.Stat(loc.rel); err != nil || !fi.IsDir() {
			return "paths", fmt.Sprintf("Export path '%s' does not exist", c)
		}
	}
	for _, l := range [][]string{e.Clients, e.RootClients, e.ReadOnlyClients, e.ReadWriteClients} {
		for _, c := range l {
			if c == "" || strings.ContainsAny(c, " \t\n;{}\"',") {
				return "clients", fmt.Sprintf("Invalid client '%s'", c)
			}
		}
	}
	return "", ""
}

// exportClients is every client an export's rules apply to; empty means all clients.
func exportClients(e *Export) map[string]bool {
	out := map[string]bool{}
	for _, l := range [][]string{e.Clients, e.RootClients, e.ReadOnlyClients, e.ReadWriteClients} {
		for _, c := range l {
			out[c] = true
		}
	}
	return out
}

// conflicts reports whether two exports' rules apply to the same client on path p: both
// list p and either both are open to all clients or they share a client (compared as
// written; the simulator resolves no names or subnets).
func conflicts(a, b *Export, p string) bool {
	if a.ID == b.ID || a.Zone != b.Zone || !slices.Contains(a.Paths, p) || !slices.Contains(b.Paths, p) {
		return false
	}
	ca, cb := exportClients(a), exportClients(b)
	if len(ca) == 0 || len(cb) == 0 {
		return len(ca) == len(cb)
	}
	for c := range ca {
		if cb[c] {
			return true
		}
	}
	return false
}

// exportConflict refuses a new or changed export whose rules clash with another export's
// on a path, as OneFS does unless the request says force or ignore_conflicts. The code
// is OneFS's AEC_CONFLICT; the wording is modelled (no recorded body).
func (s *Server) exportConflict(e *Export, r *http.Request) string {
	q := r.URL.Query()
	if isTrue(q.Get("force")) || isTrue(q.Get("ignore_conflicts")) {
		return ""
	}
	id := e.ID
	if id == 0 {
		id = s.st.NextExportID
	}
	for _, p := range e.Paths {
		for _, o := range s.st.Exports {
			if conflicts(e, o, p) {
				return fmt.Sprintf("Export rules %d and %d conflict on '%s'", o.ID, id, p)
			}
		}
	}
	return ""
}

// conflictingPaths lists e's paths where its rules clash with another export (only
// possible when it was made with force or ignore_conflicts).
func (s *Server) conflictingPaths(e *Export) []string {
	out := []string{}
	for _, p := range e.Paths {
		for _, o := range s.st.Exports {
			if conflicts(e, o, p) && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

func (s *Server) digestLocked() string {
	h := md5.Sum([]byte(fmt.Sprintf("exports-%d-%d", s.st.Generation, s.st.NextExportID)))
	return hex.EncodeToString(h[:])
}

func (s *Server) handleExports(w http.ResponseWriter, r *http.Request, res []string) {
	s.mu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			s.mu.Unlock()
		}
	}
	defer unlock()
	zone, _, zok := s.zoneOf(r)
	if !zok {
		writeError(w, 404, "AEC_NOT_FOUND", "zone", "Access zone '"+zone+"' not found")
		return
	}
	if len(res) > 1 {
		notFoundPath(w, r)
		return
	}
	changed := false
	if len(res) == 1 {
		id, err := strconv.Atoi(res[0])
		e := s.st.Exports[id]
		if err != nil || e == nil || e.Zone != zone {
			exportNotFound(w, res[0])
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, 200, map[string]any{"exports": []any{s.exportJSON(e)}})
		case http.MethodPut:
			var raw map[string]json.RawMessage
			if !decodeBody(w, r, &raw) {
				return
			}
			ne := *e
			if f, err := applyExportFields(&ne, raw); err != nil {
				writeError(w, 400, "AEC_BAD_REQUEST", f, "Invalid value for "+f+": "+err.Error())
				return
			}
			ne.ID, ne.Zone = e.ID, e.Zone
			if f, m := s.validateExport(&ne); m != "" {
				writeError(w, 400, "AEC_BAD_REQUEST", f, m)
				return
			}
			if m := s.exportConflict(&ne, r); m != "" {
				writeError(w, http.StatusConflict, "AEC_CONFLICT", "", m)
				return
			}
			*e = ne
			_ = s.st.save()
			changed = true
			writeNoContent(w)
		case http.MethodDelete:
			delete(s.st.Exports, id)
			_ = s.st.save()
			changed = true
			writeNoContent(w)
		default:
			methodNotAllowed(w, r)
		}
	} else {
		switch r.Method {
		case http.MethodGet:
			s.listExports(w, r, zone)
		case http.MethodPost:
			var raw map[string]json.RawMessage
			if !decodeBody(w, r, &raw) {
				return
			}
			e := &Export{Zone: zone}
			if f, err := applyExportFields(e, raw); err != nil {
				writeError(w, 400, "AEC_BAD_REQUEST", f, "Invalid value for "+f+": "+err.Error())
				return
			}
			if f, m := s.validateExport(e); m != "" {
				writeError(w, 400, "AEC_BAD_REQUEST", f, m)
				return
			}
			if m := s.exportConflict(e, r); m != "" {
				writeError(w, http.StatusConflict, "AEC_CONFLICT", "", m)
				return
			}
			e.ID = s.st.NextExportID
			s.st.NextExportID++
			s.st.Exports[e.ID] = e
			_ = s.st.save()
			changed = true
			writeJSON(w, http.StatusCreated, map[string]any{"id": e.ID})
		default:
			methodNotAllowed(w, r)
		}
	}
	if changed {
		unlock()
		s.exportsChanged()
	}
}

// resume token: base64("<next index>|<digest>|<zone>|<path>|<limit>")
func (s *Server) listExports(w http.ResponseWriter, r *http.Request, zone string) {
	q := r.URL.Query()
	pathFilter := normIfsPath(q.Get("path"))
	limit := 0
	digest := s.digestLocked()
	start := 0
	if tok := q.Get("resume"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		parts := strings.Split(string(b), "|")
		bad := err != nil || len(parts) != 5
		if !bad {
			start, err = strconv.Atoi(parts[0])
			bad = err != nil || start < 0
			zone, pathFilter = parts[2], parts[3]
			limit, _ = strconv.Atoi(parts[4])
		}
		if bad {
			writeError(w, 400, "AEC_BAD_REQUEST", "", "Invalid resume token")
			return
		}
	}
	if ls := q.Get("limit"); ls != "" {
		l, err := strconv.Atoi(ls)
		if err != nil || l < 1 {
			writeError(w, 400, "AEC_BAD_REQUEST", "limit", "Invalid limit: "+ls)
			return
		}
		limit = l
	}
	var all []*Export
	for _, e := range s.st.Exports {
		if e.Zone != zone {
			continue
		}
		if pathFilter != "" {
			found := false
			for _, p := range e.Paths {
				found = found || p == pathFilter
			}
			if !found {
				continue
			}
		}
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	total := len(all)
	if start > total {
		start = total
	}
	page := all[start:]
	var resume any
	if limit == 0 {
		limit = s.pageSize()
	}
	if len(page) > limit {
		page = page[:limit]
		resume = base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d|%s|%s|%s|%d", start+limit, digest, zone, pathFilter, limit)))
	}
	out := make([]any, 0, len(page))
	for _, e := range page {
		out = append(out, s.exportJSON(e))
	}
	writeJSON(w, 200, map[string]any{"digest": digest, "exports": out, "resume": resume, "total": total})
}

// exportsChanged runs the hook and the ganesha integration.
func (s *Server) exportsChanged() {
	if s.opts.OnExportsChanged == nil && s.opts.Ganesha == nil {
		return
	}
	s.gmu.Lock() // serialises hook runs; each run sees the latest list
	defer s.gmu.Unlock()
	s.mu.Lock()
	list := s.exportListLocked()
	s.mu.Unlock()
	if s.opts.OnExportsChanged != nil {
		if err := s.opts.OnExportsChanged(list); err != nil {
			s.opts.Logger.Printf("onefssim: exports hook: %v", err)
		}
	}
	if s.opts.Ganesha != nil {
		if err := s.opts.Ganesha.apply(s.rootDir, list); err != nil {
			s.opts.Logger.Printf("onefssim: ganesha: %v", err)
		}
	}
}
