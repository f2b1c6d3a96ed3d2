package onefssim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
)

// newQuotaID returns an opaque, URL-path-safe base64 id (32 characters),
// shaped like OneFS ids such as "AABpAQEAAAAAAAAAAAAAQA0AAAAAAAAA".
func (st *state) newQuotaID() string {
	for {
		seq := st.NextQuotaSeq
		st.NextQuotaSeq++
		var b [24]byte
		b[1] = 0x00
		b[2] = 0x69
		b[3] = 0x01
		b[4] = 0x01
		binary.LittleEndian.PutUint64(b[12:], seq<<8|0x40)
		binary.LittleEndian.PutUint32(b[20:], uint32(seq*2654435761))
		id := base64.StdEncoding.EncodeToString(b[:])
		if !strings.ContainsAny(id, "+/=") {
			if _, dup := st.Quotas[id]; !dup {
				return id
			}
		}
	}
}

type thresholdsReq struct {
	Hard      *int64 `json:"hard"`
	Soft      *int64 `json:"soft"`
	Advisory  *int64 `json:"advisory"`
	SoftGrace *int64 `json:"soft_grace"`
}

// usage walks the quota domain on the real tree. logical = apparent file
// sizes, physical = allocated blocks, inodes = number of objects.
func (s *Server) usage(q *Quota) (inodes, logical, physical int64) {
	loc, err := resolveIfs(q.Path)
	if err != nil {
		return 0, 0, 0
	}
	_ = fs.WalkDir(s.root.FS(), loc.rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p == snapDir && loc.rel == "." {
			return fs.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		inodes++
		if fi.Mode().IsRegular() {
			logical += fi.Size()
		}
		physical += statT(fi).Blocks * 512
		return nil
	})
	return
}

func nullable(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func (s *Server) quotaJSON(q *Quota) map[string]any {
	inodes, logical, physical := s.usage(q)
	measured := logical
	if q.ThresholdsIncludeOverhead {
		measured = physical
	}
	exceeded := func(p *int64) bool { return p != nil && *p > 0 && measured > *p }
	var pctAdv, pctSoft any
	if q.Hard != nil && *q.Hard > 0 {
		if q.Advisory != nil {
			pctAdv = float64(*q.Advisory) * 100 / float64(*q.Hard)
		}
		if q.Soft != nil {
			pctSoft = float64(*q.Soft) * 100 / float64(*q.Hard)
		}
	}
	var persona any
	if len(q.Persona) > 0 {
		persona = q.Persona
	}
	return map[string]any{
		"container":         q.Container,
		"enforced":          q.Enforced,
		"id":                q.ID,
		"include_snapshots": q.IncludeSnapshots,
		"linked":            false,
		"notifications":     "default",
		"path":              q.Path,
		"persona":           persona,
		"ready":             true,
		"thresholds": map[string]any{
			"advisory":               nullable(q.Advisory),
			"advisory_exceeded":      exceeded(q.Advisory),
			"advisory_last_exceeded": nil,
			"hard":                   nullable(q.Hard),
			"hard_exceeded":          exceeded(q.Hard),
			"hard_last_exceeded":     nil,
			"percent_advisory":       pctAdv,
			"percent_soft":           pctSoft,
			"soft":                   nullable(q.Soft),
			"soft_exceeded":          exceeded(q.Soft),
			"soft_grace":             nullable(q.SoftGrace),
			"soft_last_exceeded":     nil,
		},
		"thresholds_include_overhead": q.ThresholdsIncludeOverhead,
		"type":                        q.Type,
		"usage":                       map[string]any{"inodes": inodes, "logical": logical, "physical": physical},
	}
}

func quotaNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", "Failed to fetch quota domain record: No such file or directory")
}

// normIfsPath trims the trailing slash goisilon appends to ?path= values.
func normIfsPath(p string) string {
	if p == "" {
		return ""
	}
	return path.Clean("/" + p)
}

func (s *Server) handleQuotas(w http.ResponseWriter, r *http.Request, res []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	if len(res) > 1 {
		notFoundPath(w, r)
		return
	}
	if len(res) == 1 {
		qt := s.st.Quotas[res[0]]
		switch r.Method {
		case http.MethodGet:
			if qt == nil {
				quotaNotFound(w)
				return
			}
			writeJSON(w, 200, map[string]any{"quotas": []any{s.quotaJSON(qt)}})
		case http.MethodPut:
			if qt == nil {
				quotaNotFound(w)
				return
			}
			var raw map[string]json.RawMessage
			if !decodeBody(w, r, &raw) {
				return
			}
			for k, v := range raw {
				var err error
				switch k {
				case "enforced":
					err = json.Unmarshal(v, &qt.Enforced)
				case "container":
					err = json.Unmarshal(v, &qt.Container)
				case "thresholds_include_overhead":
					err = json.Unmarshal(v, &qt.ThresholdsIncludeOverhead)
				case "thresholds":
					var t thresholdsReq
					if err = json.Unmarshal(v, &t); err == nil {
						qt.Hard, qt.Soft, qt.Advisory, qt.SoftGrace = t.Hard, t.Soft, t.Advisory, t.SoftGrace
					}
				case "linked", "persona", "notifications":
				default:
					writeError(w, 400, "AEC_BAD_REQUEST", k, "Field: "+k+" is not a modifiable property")
					return
				}
				if err != nil {
					writeError(w, 400, "AEC_BAD_REQUEST", k, "Invalid value for "+k+": "+err.Error())
					return
				}
			}
			s.enforce(qt)
			_ = s.st.save()
			writeNoContent(w)
		case http.MethodDelete:
			if qt == nil {
				quotaNotFound(w)
				return
			}
			delete(s.st.Quotas, qt.ID)
			s.unenforce(qt)
			_ = s.st.save()
			writeNoContent(w)
		default:
			methodNotAllowed(w, r)
		}
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.listQuotas(w, r)
	case http.MethodPost:
		var req struct {
			Path                      string          `json:"path"`
			Type                      string          `json:"type"`
			Container                 bool            `json:"container"`
			Enforced                  *bool           `json:"enforced"`
			IncludeSnapshots          bool            `json:"include_snapshots"`
			ThresholdsIncludeOverhead bool            `json:"thresholds_include_overhead"`
			Thresholds                thresholdsReq   `json:"thresholds"`
			Persona                   json.RawMessage `json:"persona"`
		}
		if !decodeBody(w, r, &req) {
			return
		}
		if req.Path == "" || req.Type == "" {
			writeError(w, 400, "AEC_BAD_REQUEST", "path", "Fields path and type are required")
			return
		}
		switch req.Type {
		case "directory", "user", "group", "default-user", "default-group":
		default:
			writeError(w, 400, "AEC_BAD_REQUEST", "type", "Invalid quota type: "+req.Type)
			return
		}
		p := normIfsPath(req.Path)
		loc, err := resolveIfs(p)
		if err != nil {
			writeError(w, 400, "AEC_BAD_REQUEST", "path", err.Error())
			return
		}
		if fi, err := s.root.Stat(loc.rel); err != nil || !fi.IsDir() || loc.readOnly {
			writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "path", "Path '"+p+"' not found: No such file or directory")
			return
		}
		for _, o := range s.st.Quotas {
			if o.Path == p && o.Type == req.Type && string(o.Persona) == string(req.Persona) {
				writeError(w, http.StatusConflict, "AEC_CONFLICT", "", "Quota for '"+p+"' of type '"+req.Type+"' already exists")
				return
			}
		}
		qt := &Quota{
			ID: s.st.newQuotaID(), Path: p, Type: req.Type, Container: req.Container,
			Enforced: req.Enforced == nil || *req.Enforced, IncludeSnapshots: req.IncludeSnapshots,
			ThresholdsIncludeOverhead: req.ThresholdsIncludeOverhead,
			Hard:                      req.Thresholds.Hard, Soft: req.Thresholds.Soft,
			Advisory: req.Thresholds.Advisory, SoftGrace: req.Thresholds.SoftGrace,
			Persona: req.Persona,
		}
		if string(qt.Persona) == "null" {
			qt.Persona = nil
		}
		s.st.Quotas[qt.ID] = qt
		s.enforce(qt)
		_ = s.st.save()
		writeJSON(w, http.StatusCreated, map[string]any{"id": qt.ID})
	case http.MethodDelete:
		// DELETE /quota/quotas?path=... deletes the matching domains.
		if q.Get("path") == "" && q.Get("type") == "" {
			writeError(w, 400, "AEC_BAD_REQUEST", "", "Refusing to delete all quotas without a filter")
			return
		}
		for _, qt := range s.filterQuotas(q.Get("path"), q.Get("type")) {
			delete(s.st.Quotas, qt.ID)
			s.unenforce(qt)
		}
		_ = s.st.save()
		writeNoContent(w)
	default:
		methodNotAllowed(w, r)
	}
}

func (s *Server) unenforce(qt *Quota) {
	off := *qt
	off.Enforced = false
	s.enforce(&off)
}

// listQuotas pages like OneFS: a page of at most limit (default PageSize) quotas and a
// resume token that carries the filters, so a resumed request sends only the token.
func (s *Server) listQuotas(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, typ, off, limit, ok := q.Get("path"), q.Get("type"), 0, s.pageSize(), true
	if tok := q.Get("resume"); tok != "" {
		p, typ, off, limit, ok = decodeListToken("quotas", tok)
	} else if ls := q.Get("limit"); ls != "" {
		limit, ok = positive(ls)
	}
	if !ok {
		writeError(w, 400, "AEC_BAD_REQUEST", "", "Invalid resume token or limit")
		return
	}
	matches := s.filterQuotas(p, typ)
	page, resume := pageOf(len(matches), off, limit, func(next int) string {
		return encodeListToken("quotas", p, typ, next, limit)
	})
	out := make([]any, 0, page[1]-page[0])
	for _, qt := range matches[page[0]:page[1]] {
		out = append(out, s.quotaJSON(qt))
	}
	writeJSON(w, 200, map[string]any{"quotas": out, "resume": resume, "total": len(matches)})
}

// encodeListToken makes an opaque PAPI resume token holding the list's filters.
func encodeListToken(kind, a, b string, next, limit int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%s|%d|%d|%s|%s", kind, next, limit, a, b)))
}

func decodeListToken(kind, tok string) (a, b string, next, limit int, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	parts := strings.SplitN(string(raw), "|", 5)
	if err != nil || len(parts) != 5 || parts[0] != kind {
		return "", "", 0, 0, false
	}
	next, err1 := strconv.Atoi(parts[1])
	limit, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || next < 0 || limit < 1 {
		return "", "", 0, 0, false
	}
	return parts[3], parts[4], next, limit, true
}

func positive(v string) (int, bool) {
	n, err := strconv.Atoi(v)
	return n, err == nil && n > 0
}

// pageOf returns the [from, to) bounds of a page and its resume token (null when last).
func pageOf(total, off, limit int, token func(next int) string) ([2]int, any) {
	from := min(off, total)
	to := min(from+limit, total)
	if to < total {
		return [2]int{from, to}, token(to)
	}
	return [2]int{from, to}, nil
}

func (s *Server) filterQuotas(p, typ string) []*Quota {
	p = normIfsPath(p)
	var out []*Quota
	for _, qt := range s.st.Quotas {
		if (p == "" || qt.Path == p) && (typ == "" || qt.Type == typ) {
			out = append(out, qt)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
