package onefssim

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
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

// snapshotBase is what OneFS reports for a snapshot nothing has changed under yet (its
// own metadata): csi-powerscale's recorded fresh snapshots say 4096.
const snapshotBase = 4096

// snapshotSize is the snapshot's own size as OneFS reports it: the space it holds
// because the live tree changed since (files modified or deleted after the snapshot,
// in 8 KiB blocks), not the size of the data it shows. A fresh snapshot is small.
func (s *Server) snapshotSize(sn *Snapshot) int64 {
	base := snapshotRel(sn)
	live, _ := resolveIfs(sn.Path)
	size := int64(snapshotBase)
	_ = fs.WalkDir(s.root.FS(), base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		cur, err := s.root.Lstat(path.Join(live.rel, strings.TrimPrefix(p, base)))
		if err != nil || !cur.Mode().IsRegular() || cur.Size() != fi.Size() || !cur.ModTime().Equal(fi.ModTime()) {
			size += (fi.Size() + 8191) / 8192 * 8192
		}
		return nil
	})
	return size
}

// copySnapshotMetadata gives the snapshot's view of the tree the user attributes the
// live tree had (on OneFS they are extended attributes, which a snapshot keeps).
func (s *Server) copySnapshotMetadata(sn *Snapshot, live ifsLoc) {
	from := metaKey(live)
	to := "/ifs/" + snapshotRel(sn)
	for k, v := range s.st.Metadata {
		if k == from || strings.HasPrefix(k, from+"/") {
			s.st.Metadata[to+strings.TrimPrefix(k, from)] = append([]userAttr(nil), v...)
		}
	}
}

func (s *Server) dropSnapshotMetadata(sn *Snapshot) {
	prefix := "/ifs/" + path.Join(snapDir, sn.Name)
	for k := range s.st.Metadata {
		if k == prefix || strings.HasPrefix(k, prefix+"/") {
			delete(s.st.Metadata, k)
		}
	}
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

// listSnapshots pages like the other PAPI lists (see listQuotas).
func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	off, limit, ok := 0, s.pageSize(), true
	if tok := q.Get("resume"); tok != "" {
		_, _, off, limit, ok = decodeListToken("snapshots", tok)
	} else if ls := q.Get("limit"); ls != "" {
		limit, ok = positive(ls)
	}
	if !ok {
		writeError(w, 400, "AEC_BAD_REQUEST", "", "Invalid resume token or limit")
		return
	}
	var list []*Snapshot
	for _, sn := range s.st.Snapshots {
		list = append(list, sn)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	page, resume := pageOf(len(list), off, limit, func(next int) string {
		return encodeListToken("snapshots", "", "", next, limit)
	})
	out := make([]any, 0, page[1]-page[0])
	for _, sn := range list[page[0]:page[1]] {
		out = append(out, s.snapshotJSON(sn))
	}
	writeJSON(w, 200, map[string]any{"snapshots": out, "resume": resume, "total": len(list)})
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

// handleSnapshots serves the snapshot API; a change re-renders the exports, which serve
// each snapshot below the exports it covers (<export>/.snapshot/<name>).
func (s *Server) handleSnapshots(w http.ResponseWriter, r *http.Request, res []string) {
	if r.Method == http.MethodPost {
		s.tree.Lock() // the copy sees no create half done
		defer s.tree.Unlock()
	}
	s.mu.Lock()
	s.handleSnapshotsLocked(w, r, res)
	s.mu.Unlock()
	if r.Method != http.MethodGet {
		s.exportsChanged()
	}
}

func (s *Server) handleSnapshotsLocked(w http.ResponseWriter, r *http.Request, res []string) {
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
			s.dropSnapshotMetadata(sn)
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
				from, to := "/ifs/"+path.Join(snapDir, sn.Name), "/ifs/"+path.Join(snapDir, *req.Name)
				for k, v := range s.st.Metadata {
					if k == from || strings.HasPrefix(k, from+"/") {
						delete(s.st.Metadata, k)
						s.st.Metadata[to+strings.TrimPrefix(k, from)] = v
					}
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
		s.listSnapshots(w, r)
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
		if err := s.copyForSnapshot(loc.rel, dst); err != nil {
			_ = s.root.RemoveAll(path.Join(snapDir, name))
			writeError(w, 500, "AEC_EXCEPTION", "", "Snapshot copy failed: "+err.Error())
			return
		}
		s.st.NextSnapshotID++
		s.st.Snapshots[id] = sn
		s.copySnapshotMetadata(sn, loc)
		_ = s.st.save()
		writeJSON(w, http.StatusCreated, s.snapshotJSON(sn))
	default:
		methodNotAllowed(w, r)
	}
}

// copyForSnapshot copies the tree at rel to dst (both below Root) as a OneFS snapshot shows
// it: owners, every mode bit, nanosecond times, hard links, holes, extended attributes and
// special files (cp -a keeps them all; a snapshot of /ifs leaves the snapshots out).
func (s *Server) copyForSnapshot(rel, dst string) error {
	src, out := filepath.Join(s.rootDir, rel), filepath.Join(s.rootDir, dst)
	args := []string{"-a", "--reflink=auto", src + "/.", out}
	if rel == "." {
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		if err := os.Mkdir(out, 0o700); err != nil {
			return err
		}
		args = []string{"-a", "--reflink=auto", "-t", out}
		n := len(args)
		for _, e := range ents {
			if e.Name() != snapDir {
				args = append(args, filepath.Join(src, e.Name()))
			}
		}
		if len(args) == n {
			return nil
		}
	}
	if b, err := exec.Command("cp", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}
