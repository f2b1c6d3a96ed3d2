package onefssim

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strconv"
	"time"
)

var snapNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,255}$`)

// snapshotRel is the directory holding a snapshot's data:
// <root>/.snapshot/<name>/<path below /ifs>.
func snapshotRel(sn *Snapshot) string {
	loc, _ := resolveIfs(sn.Path)
	if loc.rel == "." {
		return path.Join(snapDir, sn.Name)
	}
	return path.Join(snapDir, sn.Name, loc.rel)
}

func (s *Server) snapshotSize(sn *Snapshot) int64 {
	var size int64
	_ = fs.WalkDir(s.root.FS(), snapshotRel(sn), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	return size
}

func (s *Server) snapshotJSON(sn *Snapshot) map[string]any {
	var exp any
	if sn.Expires != nil {
		exp = *sn.Expires
	}
	return map[string]any{
		"alias":          nil,
		"created":        sn.Created,
		"expires":        exp,
		"has_locks":      false,
		"id":             sn.ID,
		"name":           sn.Name,
		"path":           sn.Path,
		"pct_filesystem": 0.0,
		"pct_reserve":    0.0,
		"schedule":       nil,
		"shadow_bytes":   0,
		"size":           s.snapshotSize(sn),
		"state":          "active",
		"target_id":      nil,
		"target_name":    nil,
	}
}

func (s *Server) findSnapshot(ident string) *Snapshot {
	if id, err := strconv.ParseInt(ident, 10, 64); err == nil {
		if sn := s.st.Snapshots[id]; sn != nil {
			return sn
		}
	}
	for _, sn := range s.st.Snapshots {
		if sn.Name == ident {
			return sn
		}
	}
	return nil
}

func (s *Server) handleSnapshots(w http.ResponseWriter, r *http.Request, res []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(res) > 1 {
		notFoundPath(w, r)
		return
	}
	if len(res) == 1 {
		sn := s.findSnapshot(res[0])
		if sn == nil {
			writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", res[0]+" snapshot not found")
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, 200, map[string]any{"snapshots": []any{s.snapshotJSON(sn)}})
		case http.MethodDelete:
			if err := s.root.RemoveAll(path.Join(snapDir, sn.Name)); err != nil {
				writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
				return
			}
			delete(s.st.Snapshots, sn.ID)
			_ = s.st.save()
			writeNoContent(w)
		case http.MethodPut:
			var req struct {
				Name    *string `json:"name"`
				Expires *int64  `json:"expires"`
			}
			if !decodeBody(w, r, &req) {
				return
			}
			if req.Name != nil && *req.Name != sn.Name {
				if !snapNameRE.MatchString(*req.Name) || s.findSnapshot(*req.Name) != nil {
					writeError(w, 400, "AEC_BAD_REQUEST", "name", "Invalid or duplicate snapshot name: "+*req.Name)
					return
				}
				if err := s.root.Rename(path.Join(snapDir, sn.Name), path.Join(snapDir, *req.Name)); err != nil {
					writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
					return
				}
				sn.Name = *req.Name
			}
			if req.Expires != nil {
				sn.Expires = req.Expires
			}
			_ = s.st.save()
			writeNoContent(w)
		default:
			methodNotAllowed(w, r)
		}
		return
	}
	switch r.Method {
	case http.MethodGet:
		var list []*Snapshot
		for _, sn := range s.st.Snapshots {
			list = append(list, sn)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		out := make([]any, 0, len(list))
		for _, sn := range list {
			out = append(out, s.snapshotJSON(sn))
		}
		writeJSON(w, 200, map[string]any{"snapshots": out, "resume": nil, "total": len(out)})
	case http.MethodPost:
		var req struct {
			Name    string          `json:"name"`
			Path    string          `json:"path"`
			Expires *int64          `json:"expires"`
			Alias   json.RawMessage `json:"alias"`
		}
		if !decodeBody(w, r, &req) {
			return
		}
		if req.Path == "" {
			writeError(w, 400, "AEC_BAD_REQUEST", "path", "Field: path is required")
			return
		}
		p := normIfsPath(req.Path)
		loc, err := resolveIfs(p)
		if err != nil || loc.readOnly {
			writeError(w, 400, "AEC_BAD_REQUEST", "path", "Invalid snapshot path: "+p)
			return
		}
		fi, err := s.root.Stat(loc.rel)
		if err != nil || !fi.IsDir() {
			writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "path", "Path '"+p+"' not found: No such file or directory")
			return
		}
		id := s.st.NextSnapshotID
		name := req.Name
		if name == "" {
			name = "s" + strconv.FormatInt(id, 10)
		}
		if !snapNameRE.MatchString(name) {
			writeError(w, 400, "AEC_BAD_REQUEST", "name", "Invalid snapshot name: "+name)
			return
		}
		if s.findSnapshot(name) != nil {
			writeError(w, http.StatusConflict, "AEC_CONFLICT", "name", "Snapshot name '"+name+"' is already in use")
			return
		}
		sn := &Snapshot{ID: id, Name: name, Path: p, Created: time.Now().Unix(), Expires: req.Expires}
		dst := snapshotRel(sn)
		if err := s.root.MkdirAll(path.Dir(dst), 0o755); err != nil {
			writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
			return
		}
		skip := func(rel string) bool { return loc.rel == "." && rel == snapDir }
		if err := copyTree(s.root, loc.rel, dst, skip); err != nil {
			_ = s.root.RemoveAll(path.Join(snapDir, name))
			writeError(w, 500, "AEC_EXCEPTION", "", "Snapshot copy failed: "+err.Error())
			return
		}
		s.st.NextSnapshotID++
		s.st.Snapshots[id] = sn
		_ = s.st.save()
		writeJSON(w, http.StatusCreated, s.snapshotJSON(sn))
	default:
		methodNotAllowed(w, r)
	}
}
