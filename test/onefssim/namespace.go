package onefssim

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const snapDir = ".snapshot"

// ifsLoc is an /ifs path resolved onto the real tree.
type ifsLoc struct {
	ifs      string // cleaned OneFS path, /ifs/...
	rel      string // path relative to Root ("." for /ifs)
	readOnly bool   // inside a snapshot
}

// resolveIfs maps a OneFS path (/ifs/...) onto the real tree. A ".snapshot"
// component at any level, /ifs/<p>/.snapshot/<snap>/<rest>, maps to
// <root>/.snapshot/<snap>/<p>/<rest> as on OneFS.
func resolveIfs(p string) (ifsLoc, error) {
	c := path.Clean("/" + p)
	if c != "/ifs" && !strings.HasPrefix(c, "/ifs/") {
		return ifsLoc{}, fmt.Errorf("path %q is not under /ifs", p)
	}
	comps := splitPath(strings.TrimPrefix(c, "/ifs"))
	loc := ifsLoc{ifs: c}
	for i, x := range comps {
		if x != snapDir {
			continue
		}
		loc.readOnly = true
		if len(comps) == i+1 {
			loc.rel = snapDir
			return loc, nil
		}
		parts := append([]string{snapDir, comps[i+1]}, comps[:i]...)
		parts = append(parts, comps[i+2:]...)
		loc.rel = path.Join(parts...)
		return loc, nil
	}
	if len(comps) == 0 {
		loc.rel = "."
	} else {
		loc.rel = path.Join(comps...)
	}
	return loc, nil
}

func notFoundObject(w http.ResponseWriter, loc ifsLoc) {
	obj := strings.TrimPrefix(strings.TrimPrefix(loc.ifs, "/ifs"), "/")
	writeError(w, http.StatusNotFound, "AEC_NOT_FOUND",
		"", fmt.Sprintf("Unable to open object '%s' in store 'ifs' -- not found.", obj))
}

func hasParam(r *http.Request, name string) bool {
	_, ok := r.URL.Query()[name]
	return ok
}

// metaKey is where an object's user attributes are kept: one key per object, whichever
// of the two spellings (/ifs/<p>/.snapshot/<s>/... or /ifs/.snapshot/<s>/<p>/...) names it.
func metaKey(loc ifsLoc) string {
	if loc.rel == "." {
		return "/ifs"
	}
	return "/ifs/" + loc.rel
}

// attrNameFromHeader is the attribute name OneFS stores for an x-isi-ifs-attr-<name>
// header. OneFS's namespace handler reads headers from Apache's CGI environment
// (http2env): the name is upper-cased and '-' becomes '_'; a header whose name holds any
// other character is not passed on at all (Apache 2.4 drops it). So
// "x-isi-ifs-attr-owner-id" is stored as OWNER_ID and "x-isi-ifs-attr-a.b" is lost.
func attrNameFromHeader(key string) (string, bool) {
	if len(key) <= len(attrHeaderPrefix) || !strings.EqualFold(key[:len(attrHeaderPrefix)], attrHeaderPrefix) {
		return "", false
	}
	name := key[len(attrHeaderPrefix):]
	var b strings.Builder
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z':
			b.WriteRune(c - 'a' + 'A')
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteRune(c)
		case c == '-':
			b.WriteByte('_')
		default:
			return "", false
		}
	}
	return b.String(), true
}

func (s *Server) handleNamespace(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/namespace")
	comps := splitPath(rest)
	if len(comps) == 0 {
		// list of stores
		writeJSON(w, 200, map[string]any{"namespaces": []map[string]string{{"name": "ifs", "path": "/ifs"}}})
		return
	}
	if comps[0] != "ifs" {
		writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", fmt.Sprintf("Unable to open object '%s' in store '%s' -- not found.", strings.Join(comps[1:], "/"), comps[0]))
		return
	}
	loc, err := resolveIfs("/" + strings.Join(comps, "/"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "AEC_BAD_REQUEST", "", err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.nsGet(w, r, loc)
	case http.MethodHead:
		fi, err := s.root.Lstat(loc.rel)
		if err != nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("x-isi-ifs-target-type", targetType(fi))
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		w.WriteHeader(http.StatusOK)
	case http.MethodPut:
		s.nsPut(w, r, loc)
	case http.MethodPost:
		if r.Header.Get("x-isi-ifs-set-location") == "" {
			writeError(w, http.StatusBadRequest, "AEC_BAD_REQUEST", "", "POST on a namespace object needs x-isi-ifs-set-location (queries are not simulated)")
			return
		}
		s.nsMove(w, r, loc)
	case http.MethodDelete:
		s.nsDelete(w, r, loc)
	default:
		methodNotAllowed(w, r)
	}
}

func targetType(fi fs.FileInfo) string {
	if fi.IsDir() {
		return "container"
	}
	return "object"
}

// ---- GET ----

func (s *Server) nsGet(w http.ResponseWriter, r *http.Request, loc ifsLoc) {
	fi, err := s.root.Lstat(loc.rel)
	if err != nil {
		notFoundObject(w, loc)
		return
	}
	q := r.URL.Query()
	switch {
	case hasParam(r, "metadata"):
		s.mu.Lock()
		ua := append([]userAttr(nil), s.st.Metadata[metaKey(loc)]...)
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"attrs": systemAttrs(loc, fi, ua)})
		return
	case hasParam(r, "acl"):
		owner, group := ownerGroup(fi)
		writeJSON(w, 200, map[string]any{
			"authoritative": "mode",
			"mode":          fmt.Sprintf("%04o", fi.Mode().Perm()),
			"owner":         map[string]any{"id": "UID:" + strconv.Itoa(int(statT(fi).Uid)), "name": owner, "type": "user"},
			"group":         map[string]any{"id": "GID:" + strconv.Itoa(int(statT(fi).Gid)), "name": group, "type": "group"},
		})
		return
	}
	if !fi.IsDir() {
		f, err := s.root.Open(loc.rel)
		if err != nil {
			notFoundObject(w, loc)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		w.Header().Set("x-isi-ifs-target-type", "object")
		w.WriteHeader(200)
		_, _ = io.Copy(w, f)
		return
	}
	// Directory listing.
	maxDepth := 0
	if v := q.Get("max-depth"); v != "" {
		if maxDepth, err = strconv.Atoi(v); err != nil {
			writeError(w, 400, "AEC_BAD_REQUEST", "max-depth", "Invalid max-depth: "+v)
			return
		}
	}
	detail := map[string]bool{"name": true}
	for _, d := range q["detail"] {
		for _, x := range strings.Split(d, ",") {
			switch x = strings.TrimSpace(x); x {
			case "default", "*", "all":
				for _, k := range []string{"name", "type", "size", "container_path", "owner", "group", "mode", "last_modified"} {
					detail[k] = true
				}
			case "":
			default:
				detail[x] = true
			}
		}
	}
	typeFilter := q.Get("type")
	var children []map[string]any
	var walk func(rel, ifsDir string, depth int) error
	walk = func(rel, ifsDir string, depth int) error {
		ents, err := fs.ReadDir(s.root.FS(), rel)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if rel == "." && e.Name() == snapDir {
				continue // hidden, as on OneFS
			}
			cr := path.Join(rel, e.Name())
			cfi, err := s.root.Lstat(cr)
			if err != nil {
				continue
			}
			tt := targetType(cfi)
			if typeFilter == "" || typeFilter == tt {
				children = append(children, childEntry(e.Name(), ifsDir, cfi, detail))
			}
			if cfi.IsDir() && (maxDepth < 0 || depth < maxDepth) {
				if err := walk(cr, path.Join(ifsDir, e.Name()), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(loc.rel, loc.ifs, 0); err != nil {
		writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
		return
	}
	if sortKey := q.Get("sort"); sortKey != "" {
		desc := strings.EqualFold(q.Get("dir"), "DESC")
		sort.SliceStable(children, func(i, j int) bool {
			a, b := fmt.Sprint(children[i][sortKey]), fmt.Sprint(children[j][sortKey])
			if desc {
				return a > b
			}
			return a < b
		})
	}
	// Paging: the resume token is an opaque encoding of the offset and path.
	off := 0
	if tok := q.Get("resume"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		parts := strings.SplitN(string(b), "|", 2)
		if err != nil || len(parts) != 2 || parts[1] != loc.ifs {
			writeError(w, 400, "AEC_BAD_REQUEST", "", "Invalid resume token")
			return
		}
		if off, err = strconv.Atoi(parts[0]); err != nil || off < 0 {
			writeError(w, 400, "AEC_BAD_REQUEST", "", "Invalid resume token")
			return
		}
	}
	if off > len(children) {
		off = len(children)
	}
	children = children[off:]
	// The token holds only the position: type, detail and sort come from each request, so
	// a client must send its filters again with every page (as on OneFS).
	limit := s.pageSize()
	if ls := q.Get("limit"); ls != "" {
		if limit, err = strconv.Atoi(ls); err != nil || limit < 1 {
			writeError(w, 400, "AEC_BAD_REQUEST", "limit", "Invalid limit: "+ls)
			return
		}
	}
	resp := map[string]any{"resume": ""}
	if len(children) > limit {
		children = children[:limit]
		resp["resume"] = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(off+limit) + "|" + loc.ifs))
	}
	if children == nil {
		children = []map[string]any{}
	}
	resp["children"] = children
	writeJSON(w, 200, resp)
}

func statT(fi fs.FileInfo) *syscall.Stat_t {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st
	}
	return &syscall.Stat_t{}
}

func ownerGroup(fi fs.FileInfo) (string, string) {
	st := statT(fi)
	owner, group := strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return owner, group
}

func childEntry(name, containerPath string, fi fs.FileInfo, detail map[string]bool) map[string]any {
	m := map[string]any{"name": name}
	if detail["type"] {
		m["type"] = targetType(fi)
	}
	if detail["size"] {
		m["size"] = fi.Size()
	}
	if detail["container_path"] {
		m["container_path"] = containerPath
	}
	if detail["owner"] || detail["group"] {
		o, g := ownerGroup(fi)
		if detail["owner"] {
			m["owner"] = o
		}
		if detail["group"] {
			m["group"] = g
		}
	}
	if detail["mode"] {
		m["mode"] = fmt.Sprintf("%04o", fi.Mode().Perm())
	}
	if detail["last_modified"] {
		m["last_modified"] = fi.ModTime().UTC().Format(time.RFC1123)
	}
	return m
}

func systemAttrs(loc ifsLoc, fi fs.FileInfo, ua []userAttr) []map[string]any {
	st := statT(fi)
	owner, group := ownerGroup(fi)
	container := path.Dir(loc.ifs)
	attrs := []map[string]any{
		{"name": "type", "value": targetType(fi), "namespace": nil},
		{"name": "size", "value": fi.Size(), "namespace": nil},
		{"name": "mode", "value": fmt.Sprintf("%04o", fi.Mode().Perm()), "namespace": nil},
		{"name": "owner", "value": owner, "namespace": nil},
		{"name": "group", "value": group, "namespace": nil},
		{"name": "uid", "value": st.Uid, "namespace": nil},
		{"name": "gid", "value": st.Gid, "namespace": nil},
		{"name": "nlink", "value": st.Nlink, "namespace": nil},
		{"name": "id", "value": st.Ino, "namespace": nil},
		{"name": "blocks", "value": st.Blocks, "namespace": nil},
		{"name": "block_size", "value": st.Blksize, "namespace": nil},
		{"name": "last_modified", "value": fi.ModTime().UTC().Format(time.RFC1123), "namespace": nil},
		{"name": "container", "value": "ifs", "namespace": nil},
		{"name": "container_path", "value": container, "namespace": nil},
		{"name": "is_hidden", "value": strings.HasPrefix(path.Base(loc.ifs), "."), "namespace": nil},
	}
	for _, a := range ua {
		attrs = append(attrs, map[string]any{"name": a.Name, "value": a.Value, "namespace": "user"})
	}
	return attrs
}

// ---- PUT ----

// parseAccessControl turns x-isi-ifs-access-control (octal mode or a OneFS
// predefined ACL name) into a permission mode.
func parseAccessControl(v string, def os.FileMode) (os.FileMode, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "":
		return def, nil
	case "private_read":
		return 0o500, nil
	case "private":
		return 0o700, nil
	case "public_read":
		return 0o755, nil
	case "public_read_write", "public":
		return 0o777, nil
	}
	m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("invalid x-isi-ifs-access-control %q", v)
	}
	return os.FileMode(m & 0o777), nil
}

const attrHeaderPrefix = "X-Isi-Ifs-Attr-"

func (s *Server) nsPut(w http.ResponseWriter, r *http.Request, loc ifsLoc) {
	if loc.readOnly {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Read-only file system: "+loc.ifs)
		return
	}
	if hasParam(r, "metadata") || hasParam(r, "acl") || r.Header.Get("x-isi-ifs-copy-source") != "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.nsPutLocked(w, r, loc)
		return
	}
	s.nsCreate(w, r, loc)
}

// nsPutLocked sets metadata or a mode, or copies, under s.mu.
func (s *Server) nsPutLocked(w http.ResponseWriter, r *http.Request, loc ifsLoc) {
	if hasParam(r, "metadata") {
		s.putMetadata(w, r, loc)
		return
	}
	if hasParam(r, "acl") {
		var req struct {
			Authoritative string `json:"authoritative"`
			Mode          string `json:"mode"`
		}
		if !decodeBody(w, r, &req) {
			return
		}
		if _, err := s.root.Lstat(loc.rel); err != nil {
			notFoundObject(w, loc)
			return
		}
		if req.Mode != "" {
			m, err := parseAccessControl(req.Mode, 0)
			if err != nil {
				writeError(w, 400, "AEC_BAD_REQUEST", "mode", err.Error())
				return
			}
			if err := s.root.Chmod(loc.rel, m); err != nil {
				writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
				return
			}
		}
		w.WriteHeader(200)
		return
	}
	s.copyObject(w, r, loc, r.Header.Get("x-isi-ifs-copy-source"))
}

// nsCreate makes a directory or writes a file. The filesystem work runs outside s.mu, as
// OneFS makes and writes different paths side by side (its locks are per inode; the
// kernel's per-directory locks stand for them here): with one lock for all, every create
// of a burst waited for the one before, and a directory for a streaming upload. It holds
// s.tree shared, so a snapshot's copy (which holds it exclusively) sees a create whole
// or not at all, and s.mu only to make a new directory with its metadata (mkdirWithAttrs)
// or to set an object's.
func (s *Server) nsCreate(w http.ResponseWriter, r *http.Request, loc ifsLoc) {
	s.tree.RLock()
	defer s.tree.RUnlock()
	if loc.rel == "." {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Cannot modify /ifs")
		return
	}
	q := r.URL.Query()
	overwrite := !strings.EqualFold(q.Get("overwrite"), "false")
	recursive := strings.EqualFold(q.Get("recursive"), "true")
	tt := r.Header.Get("x-isi-ifs-target-type")
	parent := path.Dir(loc.rel)
	if pfi, err := s.root.Stat(parent); err != nil {
		if !recursive {
			writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", fmt.Sprintf("Unable to create object '%s' in store 'ifs' -- parent container not found.", strings.TrimPrefix(loc.ifs, "/ifs/")))
			return
		}
		if err := s.root.MkdirAll(parent, 0o755); err != nil {
			writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
			return
		}
	} else if !pfi.IsDir() {
		writeError(w, http.StatusBadRequest, "AEC_BAD_REQUEST", "", "Parent of "+loc.ifs+" is not a container")
		return
	}
	// User metadata given as x-isi-ifs-attr-<name> headers.
	var attrs []userAttr
	for k, v := range r.Header {
		if name, ok := attrNameFromHeader(k); ok && len(v) > 0 {
			attrs = append(attrs, userAttr{Name: name, Value: v[0]})
		}
	}
	existing, statErr := s.root.Lstat(loc.rel)
	made := false // the request made the object
	switch tt {
	case "container":
		mode, err := parseAccessControl(r.Header.Get("x-isi-ifs-access-control"), 0o700)
		if err != nil {
			writeError(w, 400, "AEC_BAD_REQUEST", "x-isi-ifs-access-control", err.Error())
			return
		}
		if statErr != nil {
			ok, err := s.mkdirWithAttrs(loc, mode, attrs)
			if ok {
				w.WriteHeader(http.StatusOK)
				return
			}
			if !errors.Is(err, fs.ErrExist) {
				writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
				return
			}
			// Made by a concurrent request since the Lstat.
			if existing, statErr = s.root.Lstat(loc.rel); statErr != nil {
				writeError(w, http.StatusConflict, "AEC_CONFLICT", "", "Unable to create directory as requested -- it is being changed by another request")
				return
			}
		}
		if !existing.IsDir() || !overwrite {
			// OneFS maps an existing container to AEC_FORBIDDEN, never AEC_CONFLICT.
			writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Unable to create directory as requested -- container already exists")
			return
		}
		if r.Header.Get("x-isi-ifs-access-control") != "" {
			_ = s.root.Chmod(loc.rel, mode) // not subject to umask
		}
	case "object":
		mode, err := parseAccessControl(r.Header.Get("x-isi-ifs-access-control"), 0o600)
		if err != nil {
			writeError(w, 400, "AEC_BAD_REQUEST", "x-isi-ifs-access-control", err.Error())
			return
		}
		if statErr == nil && existing.IsDir() {
			writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "The target exists as a directory.")
			return
		}
		if statErr == nil && !overwrite {
			writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Unable to create object as requested -- object already exists")
			return
		}
		made = statErr != nil
		flags := os.O_CREATE | os.O_TRUNC | os.O_WRONLY
		if !overwrite {
			flags |= os.O_EXCL // a concurrent request may make it since the Lstat
		}
		f, err := s.root.OpenFile(loc.rel, flags, mode)
		if errors.Is(err, fs.ErrExist) {
			writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Unable to create object as requested -- object already exists")
			return
		}
		if err != nil {
			writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
			return
		}
		_, err = io.Copy(f, r.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
			return
		}
		_ = s.root.Chmod(loc.rel, mode)
	default:
		writeError(w, http.StatusBadRequest, "AEC_BAD_REQUEST", "x-isi-ifs-target-type",
			"Header x-isi-ifs-target-type must be 'container' or 'object'")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A delete (under s.mu) may have removed the object since: its metadata went with it.
	if _, err := s.root.Lstat(loc.rel); err == nil {
		if made {
			delete(s.st.Metadata, metaKey(loc)) // fresh object
		}
		for _, a := range attrs {
			s.setAttr(metaKey(loc), a)
		}
		_ = s.st.save()
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) setAttr(ifs string, a userAttr) {
	list := s.st.Metadata[ifs]
	for i := range list {
		if list[i].Name == a.Name {
			list[i].Value = a.Value
			return
		}
	}
	s.st.Metadata[ifs] = append(list, a)
}

func (s *Server) putMetadata(w http.ResponseWriter, r *http.Request, loc ifsLoc) {
	if _, err := s.root.Lstat(loc.rel); err != nil {
		notFoundObject(w, loc)
		return
	}
	var req struct {
		Action string `json:"action"`
		Attrs  []struct {
			Name      string `json:"name"`
			Value     any    `json:"value"`
			Op        string `json:"op"`
			Namespace string `json:"namespace"`
		} `json:"attrs"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	key := metaKey(loc)
	switch req.Action {
	case "replace":
		delete(s.st.Metadata, key)
	case "update", "":
	default:
		writeError(w, 400, "AEC_BAD_REQUEST", "action", "Invalid action: "+req.Action)
		return
	}
	for _, a := range req.Attrs {
		if a.Name == "" {
			writeError(w, 400, "AEC_BAD_REQUEST", "name", "Attribute name is required")
			return
		}
		switch a.Op {
		case "delete":
			list := s.st.Metadata[key]
			for i := range list {
				if list[i].Name == a.Name {
					s.st.Metadata[key] = append(list[:i], list[i+1:]...)
					break
				}
			}
		case "update", "":
			s.setAttr(key, userAttr{Name: a.Name, Value: fmt.Sprint(a.Value)})
		default:
			writeError(w, 400, "AEC_BAD_REQUEST", "op", "Invalid op: "+a.Op)
			return
		}
	}
	_ = s.st.save()
	w.WriteHeader(http.StatusOK)
}

// copyObject implements PUT with x-isi-ifs-copy-source (a /namespace/ifs/... path): a
// recursive copy of a directory (or a file). It is called with s.mu held and releases it
// while copying, so other requests (and a delete racing with the copy) go on, as on OneFS.
// Like OneFS the copy belongs to the array: a client that gives up does not stop it. An
// existing destination directory is merged into only with ?merge=true, and an existing
// file is replaced only with ?overwrite=true; anything else is reported in copy_errors
// (stopping at the first unless ?continue=true). A clean copy answers 200 with no body.
func (s *Server) copyObject(w http.ResponseWriter, r *http.Request, dst ifsLoc, src string) {
	srcPath := strings.TrimPrefix(path.Clean("/"+src), "/namespace")
	sloc, err := resolveIfs(srcPath)
	if err != nil {
		writeError(w, 400, "AEC_BAD_REQUEST", "x-isi-ifs-copy-source", err.Error())
		return
	}
	sfi, err := s.root.Lstat(sloc.rel)
	if err != nil {
		notFoundObject(w, sloc)
		return
	}
	if dst.rel == "." || dst.rel == sloc.rel || (sfi.IsDir() && (sloc.rel == "." || strings.HasPrefix(dst.rel+"/", sloc.rel+"/"))) {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Source directory is same to or parent of the destination")
		return
	}
	q := r.URL.Query()
	c := &copier{root: s.root, merge: isTrue(q.Get("merge")), overwrite: isTrue(q.Get("overwrite")),
		cont: isTrue(q.Get("continue")), delay: s.copyDelay(), stop: s.closed, srcIfs: sloc.ifs, dstIfs: dst.ifs}
	if _, err := s.root.Stat(path.Dir(dst.rel)); err != nil {
		writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", fmt.Sprintf("Unable to create object '%s' in store 'ifs' -- parent container not found.", strings.TrimPrefix(dst.ifs, "/ifs/")))
		return
	}
	done := make(chan []copyError, 1)
	s.copies.Add(1)
	go func() {
		defer s.copies.Done()
		done <- c.run(sloc.rel, dst.rel)
	}()
	s.mu.Unlock()
	defer s.mu.Lock()
	var errs []copyError
	select {
	case errs = <-done:
	case <-r.Context().Done():
		abandon(w) // the client went away; the copy goes on
	}
	if len(errs) == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, 200, map[string]any{"copy_errors": errs, "success": false})
}

func isTrue(v string) bool { return strings.EqualFold(v, "true") || v == "1" }

// copyError is one entry of a copy's copy_errors.
type copyError struct {
	ErrorSrc string `json:"error_src"`
	Message  string `json:"message"`
	Source   string `json:"source"`
	Target   string `json:"target"`
}

// copier copies a tree inside root: directories recursively, regular files by content
// (never hard links), symlinks as symlinks; modes are preserved.
type copier struct {
	root             *os.Root
	merge, overwrite bool
	cont             bool
	delay            time.Duration
	stop             <-chan struct{}
	srcIfs, dstIfs   string // for messages
	errs             []copyError
	stopped          bool
}

func (c *copier) fail(side, src, dst string, err error) {
	c.errs = append(c.errs, copyError{ErrorSrc: side, Message: err.Error(), Source: src, Target: dst})
	if !c.cont {
		c.stopped = true
	}
}

// run copies src to dst and returns the errors; a top-level directory that exists is
// merged into only with merge (or overwrite).
func (c *copier) run(src, dst string) []copyError {
	if dfi, err := c.root.Lstat(dst); err == nil && !(dfi.IsDir() && (c.merge || c.overwrite)) {
		c.fail("target side", c.srcIfs, c.dstIfs, fmt.Errorf("target '%s' exists", c.dstIfs))
		return c.errs
	}
	c.copy(src, dst, c.srcIfs, c.dstIfs)
	return c.errs
}

func (c *copier) copy(src, dst, srcIfs, dstIfs string) {
	if c.stopped {
		return
	}
	fi, err := c.root.Lstat(src)
	if err != nil {
		c.fail("source side", srcIfs, dstIfs, err)
		return
	}
	switch {
	case fi.IsDir():
		if err := c.root.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			c.fail("target side", srcIfs, dstIfs, err)
			return
		}
		ents, err := fs.ReadDir(c.root.FS(), src)
		if err != nil {
			c.fail("source side", srcIfs, dstIfs, err)
			return
		}
		for _, e := range ents {
			c.copy(path.Join(src, e.Name()), path.Join(dst, e.Name()), path.Join(srcIfs, e.Name()), path.Join(dstIfs, e.Name()))
		}
		_ = c.root.Chmod(dst, fi.Mode().Perm())
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := c.root.Readlink(src)
		if err == nil {
			_ = c.root.Remove(dst)
			err = c.root.Symlink(t, dst)
		}
		if err != nil {
			c.fail("target side", srcIfs, dstIfs, err)
		}
	case fi.Mode().IsRegular():
		c.copyFile(src, dst, srcIfs, dstIfs, fi)
	}
}

func (c *copier) copyFile(src, dst, srcIfs, dstIfs string, fi fs.FileInfo) {
	if c.delay > 0 {
		select {
		case <-time.After(c.delay):
		case <-c.stop:
			c.fail("target side", srcIfs, dstIfs, errors.New("copy interrupted: server shutting down"))
			c.stopped = true
			return
		}
	}
	if _, err := c.root.Lstat(dst); err == nil && !c.overwrite {
		c.fail("target side", srcIfs, dstIfs, fmt.Errorf("target '%s' exists", dstIfs))
		return
	}
	in, err := c.root.Open(src)
	if err != nil {
		c.fail("source side", srcIfs, dstIfs, err)
		return
	}
	defer in.Close()
	out, err := c.root.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm())
	if err == nil {
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = c.root.Chmod(dst, fi.Mode().Perm())
	}
	if err != nil {
		c.fail("target side", srcIfs, dstIfs, err)
	}
}

// ---- POST (move) ----

// nsMove implements POST with x-isi-ifs-set-location: a rename inside the store. An
// existing destination is refused with OneFS's 403, never replaced.
func (s *Server) nsMove(w http.ResponseWriter, r *http.Request, src ifsLoc) {
	setLoc := r.Header.Get("x-isi-ifs-set-location")
	if !strings.HasPrefix(setLoc, "/namespace/") {
		writeError(w, 400, "AEC_BAD_REQUEST", "", fmt.Sprintf("x-isi-ifs-set-location '%s' is invalid.", setLoc))
		return
	}
	dst, err := resolveIfs(strings.TrimPrefix(setLoc, "/namespace"))
	if err != nil || dst.rel == "." {
		writeError(w, 400, "AEC_BAD_REQUEST", "", fmt.Sprintf("x-isi-ifs-set-location '%s' is invalid.", setLoc))
		return
	}
	if src.readOnly || dst.readOnly || src.rel == "." {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Unable to move on read-only filesystem or on a WORM file or directory")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.root.Lstat(src.rel); err != nil {
		writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", fmt.Sprintf("The source '/namespace%s' does not exist.", src.ifs))
		return
	}
	if _, err := s.root.Lstat(dst.rel); err == nil {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", fmt.Sprintf("The destination '%s' exists.", setLoc))
		return
	}
	if strings.HasPrefix(dst.rel+"/", src.rel+"/") {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "The source is a parent directory of the destination.")
		return
	}
	if err := s.root.Rename(src.rel, dst.rel); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", "A path prefix of the destination doesn't exist or a component of the source path doesn't exist.")
			return
		}
		writeError(w, 500, "AEC_SYSTEM_INTERNAL_ERROR", "", "Unable to move -- system internal error.")
		return
	}
	from, to := metaKey(src), metaKey(dst)
	for k, v := range s.st.Metadata {
		if k == from || strings.HasPrefix(k, from+"/") {
			delete(s.st.Metadata, k)
			s.st.Metadata[to+strings.TrimPrefix(k, from)] = v
		}
	}
	_ = s.st.save()
	writeNoContent(w)
}

// ---- DELETE ----

// nsDelete removes an object. As on OneFS a missing object deletes fine (204), a
// non-empty directory without ?recursive=true is 403, and a recursive delete that loses
// a race with a writer (the directory is not empty at the end) is 409 AEC_CONFLICT.
// mkdirWithAttrs makes a directory with its mode and user metadata under s.mu, so nobody
// sees it without them (OneFS makes both in one operation); false when it was not made.
func (s *Server) mkdirWithAttrs(loc ifsLoc, mode os.FileMode, attrs []userAttr) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.root.Mkdir(loc.rel, mode); err != nil {
		return false, err
	}
	_ = s.root.Chmod(loc.rel, mode)     // not subject to umask
	delete(s.st.Metadata, metaKey(loc)) // fresh object
	for _, a := range attrs {
		s.setAttr(metaKey(loc), a)
	}
	_ = s.st.save()
	return true, nil
}

func (s *Server) nsDelete(w http.ResponseWriter, r *http.Request, loc ifsLoc) {
	if loc.readOnly {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Read-only file system: "+loc.ifs)
		return
	}
	if loc.rel == "." {
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", "Cannot delete /ifs")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := s.root.Lstat(loc.rel)
	if err != nil {
		writeNoContent(w)
		return
	}
	target := strings.TrimPrefix(loc.ifs, "/ifs/")
	recursive := isTrue(r.URL.Query().Get("recursive"))
	if fi.IsDir() && recursive {
		s.quota.release(loc.rel)
		err = s.root.RemoveAll(loc.rel)
	} else {
		err = s.root.Remove(loc.rel)
	}
	switch {
	case err == nil:
	case fi.IsDir() && recursive && errors.Is(err, syscall.ENOTEMPTY):
		writeError(w, http.StatusConflict, "AEC_CONFLICT", "", fmt.Sprintf("The directory '%s' is not empty.", target))
		return
	case fi.IsDir() && (errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)):
		writeError(w, http.StatusForbidden, "AEC_FORBIDDEN", "", fmt.Sprintf("The directory '%s' is not empty.", target))
		return
	default:
		writeError(w, 500, "AEC_SYSTEM_INTERNAL_ERROR", "", "Unable to delete -- system internal error.")
		return
	}
	key := metaKey(loc)
	for k := range s.st.Metadata {
		if k == key || strings.HasPrefix(k, key+"/") {
			delete(s.st.Metadata, k)
		}
	}
	_ = s.st.save()
	writeNoContent(w)
}
