package onefssim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"time"
)

const (
	sessionCookie = "isisessid"
	csrfCookie    = "isicsrf"
	// absolute session lifetime, as on OneFS (4 h).
	sessionAbsolute = 4 * time.Hour
)

func (s *Server) credsOK(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.User))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.Password))
	return u&p == 1
}

func unauthorized(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusUnauthorized, "AEC_UNAUTHORIZED", "", msg)
}

// lookupSession returns the live session named by the isisessid cookie,
// refreshing its inactivity timer, or nil.
func (s *Server) lookupSession(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	se := s.sess[c.Value]
	if se == nil {
		return nil
	}
	now := time.Now()
	if now.Sub(se.lastUsed) > s.opts.SessionTimeout || now.Sub(se.created) > sessionAbsolute {
		delete(s.sess, c.Value)
		return nil
	}
	se.lastUsed = now
	return se
}

// authorize accepts HTTP Basic credentials, or a session cookie together with
// a matching X-CSRF-Token and a Referer header. It writes a 401 otherwise.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if u, p, ok := r.BasicAuth(); ok {
		if s.credsOK(u, p) {
			return true
		}
		unauthorized(w, "Authorization required")
		return false
	}
	if _, err := r.Cookie(sessionCookie); err != nil {
		unauthorized(w, "Authorization required")
		return false
	}
	se := s.lookupSession(r)
	if se == nil {
		unauthorized(w, "Authorization required")
		return false
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(se.csrf)) != 1 {
		unauthorized(w, "CSRF token missing or invalid")
		return false
	}
	if r.Header.Get("Referer") == "" {
		unauthorized(w, "Referer header required with session authentication")
		return false
	}
	return true
}

func randToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) sessionInfo(se *session) map[string]any {
	return map[string]any{
		"services":         []string{"platform", "namespace"},
		"timeout_absolute": int(sessionAbsolute / time.Second),
		"timeout_inactive": int(s.opts.SessionTimeout / time.Second),
		"username":         se.user,
	}
}

// handleSession serves /session/1/session (POST login, GET info, DELETE logout).
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		var req struct {
			Username string   `json:"username"`
			Password string   `json:"password"`
			Services []string `json:"services"`
		}
		if !decodeBody(w, r, &req) {
			return
		}
		if !s.credsOK(req.Username, req.Password) {
			unauthorized(w, "Username or password is incorrect.")
			return
		}
		for _, sv := range req.Services {
			if sv != "platform" && sv != "namespace" && sv != "remote-service" {
				writeError(w, http.StatusBadRequest, "AEC_BAD_REQUEST", "services", "Unknown service: "+sv)
				return
			}
		}
		now := time.Now()
		se := &session{id: randToken(), csrf: randToken(), user: req.Username, created: now, lastUsed: now}
		s.smu.Lock()
		s.sess[se.id] = se
		s.smu.Unlock()
		w.Header().Add("Set-Cookie", sessionCookie+"="+se.id+"; path=/; HttpOnly; Secure; SameSite=Strict")
		w.Header().Add("Set-Cookie", csrfCookie+"="+se.csrf+"; path=/; Secure; SameSite=Strict")
		writeJSON(w, http.StatusCreated, s.sessionInfo(se))
	case http.MethodGet:
		se := s.lookupSession(r)
		if se == nil {
			unauthorized(w, "Authorization required")
			return
		}
		writeJSON(w, http.StatusOK, s.sessionInfo(se))
	case http.MethodDelete:
		se := s.lookupSession(r)
		if se == nil {
			unauthorized(w, "Authorization required")
			return
		}
		s.smu.Lock()
		delete(s.sess, se.id)
		s.smu.Unlock()
		w.Header().Add("Set-Cookie", sessionCookie+"=; path=/; Max-Age=0")
		writeNoContent(w)
	default:
		methodNotAllowed(w, r)
	}
}

// SessionCount returns the number of live sessions (for tests).
func (s *Server) SessionCount() int {
	s.smu.Lock()
	defer s.smu.Unlock()
	n := 0
	for _, se := range s.sess {
		if time.Since(se.lastUsed) <= s.opts.SessionTimeout {
			n++
		}
	}
	return n
}
