// Package onefssim is a Dell PowerScale OneFS Platform API (PAPI) and
// namespace (RAN) API simulator backed by a real directory tree that stands
// for /ifs. It serves github.com/dell/goisilon unchanged and is used by tests
// and by the local demo. See README.md in this directory for the endpoints
// and where the simulator simplifies compared to a real array.
package onefssim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures a Server.
type Options struct {
	// Root is the real directory that stands for /ifs. It must exist.
	Root string
	// StateDir, if set, is where the simulator keeps its state (exports,
	// quotas, snapshots, user metadata) as state.json, so that it survives
	// restarts. It must lie outside Root. Empty means in-memory state only.
	StateDir string
	// User and Password are the only accepted credentials (default admin/admin).
	User     string
	Password string
	// Listen is the TCP address (default 127.0.0.1:8080; tests use 127.0.0.1:0).
	Listen string
	// SessionTimeout is the session inactivity timeout (default 15 min).
	SessionTimeout time.Duration
	// Delay is an artificial delay added to every request.
	Delay time.Duration
	// Latest is the value served by GET /platform/latest (default "16", OneFS 9.5).
	Latest string
	// Release is onefs_version.release in /platform/3/cluster/config (default "v9.5.0.0").
	Release string
	// ClusterName is the cluster name (default "onefssim").
	ClusterName string
	// Zones maps access zone names to their base path. "System" -> "/ifs" is
	// always present.
	Zones map[string]string
	// Logger receives one line per request (method, path, status, duration);
	// credentials are never logged. Nil means log.Default(); use
	// log.New(io.Discard, "", 0) to silence.
	Logger *log.Logger
	// OnExportsChanged is called (synchronously, after the state changed)
	// with the full export list whenever an export is created, modified or
	// deleted, and once from Start. An error is logged, not returned to the
	// API client.
	OnExportsChanged func(exports []Export) error
	// Ganesha, if set, makes exports real through nfs-ganesha: the export
	// blocks are written to Ganesha.ExportsFile and ganesha is told to reload.
	Ganesha *GaneshaOptions
	// PageSize is the page size of every list (namespace directory listings,
	// exports, quotas, snapshots) when the client gives no limit. OneFS pages
	// by default (1000 entries, the default here); tests set it small so that
	// clients' resume loops run.
	PageSize int
	// CopyDelay is an artificial delay per file of a namespace copy
	// (x-isi-ifs-copy-source), to make copies slow enough to be cut.
	CopyDelay time.Duration
	// EnforceHardQuotas makes enforced hard thresholds fail writes with EDQUOT,
	// as OneFS does, also for writes through NFS. Root must be on a btrfs
	// filesystem (see NewBtrfsRoot); the simulator must run as root. See
	// README "Hard quotas".
	EnforceHardQuotas bool
}

// DefaultPageSize is OneFS's page size for lists without a limit.
const DefaultPageSize = 1000

// Server is a running (or startable) OneFS simulator.
type Server struct {
	opts    Options
	root    *os.Root
	rootDir string

	mu sync.Mutex // guards st and the filesystem operations but a create's (nsCreate)
	// tree is held shared by a create's filesystem work, exclusively by a snapshot's copy
	// (taken before mu).
	tree   sync.RWMutex
	st     *state
	gmu    sync.Mutex // serialises export hooks
	smu    sync.Mutex // guards sessions
	sess   map[string]*session
	hmu    sync.Mutex
	hang   bool
	delay  time.Duration
	hangC  chan struct{} // closed when hang is switched off
	copyD  time.Duration
	fmu    sync.Mutex
	faults []*Fault
	hook   func(*http.Request)

	copies sync.WaitGroup // namespace copies, which outlive their requests
	quota  *quotaEnforcer

	ln     net.Listener
	srv    *http.Server
	url    string
	closed chan struct{}

	lmu  sync.Mutex
	reqs []RequestRecord
}

// RequestRecord is one entry of the request log.
type RequestRecord struct {
	Method string
	Path   string
	Query  string
	Status int
}

type session struct {
	id, csrf string
	user     string
	created  time.Time
	lastUsed time.Time
}

// New validates the options and loads the state; it does not listen yet.
func New(o Options) (*Server, error) {
	if o.Root == "" {
		return nil, errors.New("onefssim: Root is required")
	}
	abs, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("onefssim: root %q is not a directory", abs)
	}
	o.Root = abs
	if o.User == "" {
		o.User = "admin"
	}
	if o.Password == "" {
		o.Password = "admin"
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 15 * time.Minute
	}
	if o.Latest == "" {
		o.Latest = "16"
	}
	if o.Release == "" {
		o.Release = "v9.5.0.0"
	}
	if o.ClusterName == "" {
		o.ClusterName = "onefssim"
	}
	zones := map[string]string{"System": "/ifs"}
	for k, v := range o.Zones {
		zones[k] = v
	}
	o.Zones = zones
	if o.Logger == nil {
		o.Logger = log.Default()
	}
	if o.StateDir != "" {
		sd, err := filepath.Abs(o.StateDir)
		if err != nil {
			return nil, err
		}
		if sd == abs || strings.HasPrefix(sd, abs+string(filepath.Separator)) {
			return nil, errors.New("onefssim: StateDir must be outside Root")
		}
		o.StateDir = sd
		if err := os.MkdirAll(sd, 0o700); err != nil {
			return nil, err
		}
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    o,
		root:    r,
		rootDir: abs,
		sess:    map[string]*session{},
		delay:   o.Delay,
		closed:  make(chan struct{}),
	}
	if s.st, err = loadState(o.StateDir); err != nil {
		r.Close()
		return nil, err
	}
	s.copyD = o.CopyDelay
	if o.EnforceHardQuotas {
		if s.quota, err = newQuotaEnforcer(abs); err != nil {
			r.Close()
			return nil, err
		}
		s.reapplyQuotas()
	}
	return s, nil
}

// Start listens on Options.Listen with a fresh self-signed certificate and
// serves in the background. It returns the base URL, e.g. https://127.0.0.1:8080.
func (s *Server) Start() (string, error) {
	cert, err := selfSignedCert(s.opts.Listen)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return "", err
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	s.url = "https://" + ln.Addr().String()
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	s.exportsChanged()
	return s.url, nil
}

// URL returns the base URL after Start.
func (s *Server) URL() string { return s.url }

// Root returns the absolute path of the directory that stands for /ifs.
func (s *Server) Root() string { return s.rootDir }

// Close stops the server, releasing hung requests.
func (s *Server) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
		close(s.closed)
	}
	var err error
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			err = s.srv.Close()
		}
	}
	s.copies.Wait() // copies stop at the next file once closed
	s.quota.close()
	s.root.Close()
	return err
}

// SetHang makes every following request block (until switched off, the
// client gives up, or the server closes) when on is true.
func (s *Server) SetHang(on bool) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if on && !s.hang {
		s.hangC = make(chan struct{})
	}
	if !on && s.hang {
		close(s.hangC)
	}
	s.hang = on
}

// SetDelay sets the artificial per-request delay.
func (s *Server) SetDelay(d time.Duration) {
	s.hmu.Lock()
	s.delay = d
	s.hmu.Unlock()
}

// SetSessionTimeout changes the session inactivity timeout.
func (s *Server) SetSessionTimeout(d time.Duration) {
	s.smu.Lock()
	s.opts.SessionTimeout = d
	s.smu.Unlock()
}

// SetCopyDelay sets the artificial per-file delay of namespace copies.
func (s *Server) SetCopyDelay(d time.Duration) {
	s.hmu.Lock()
	s.copyD = d
	s.hmu.Unlock()
}

func (s *Server) copyDelay() time.Duration {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.copyD
}

// WaitCopies blocks until the namespace copies running in the background (whose
// clients may have given up) have finished.
func (s *Server) WaitCopies() { s.copies.Wait() }

func (s *Server) pageSize() int {
	if s.opts.PageSize > 0 {
		return s.opts.PageSize
	}
	return DefaultPageSize
}

// Fault makes matching requests fail, to reproduce what a real array does now and then.
type Fault struct {
	Method string // empty matches any method
	// Path matches request paths that start with it (e.g. "/platform/1/quota/quotas").
	Path string
	// Status, Code and Message make the error body {"errors":[{"code","message"}]}.
	Status        int
	Code, Message string
	// Times is how many requests fail (default 1).
	Times int
	// After lets the request take effect first and only then answers with the
	// error: the array did the work, the client sees a failure (a lost reply).
	After bool
}

// InjectFault adds a fault; faults are matched in the order they were added.
func (s *Server) InjectFault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.fmu.Lock()
	s.faults = append(s.faults, &f)
	s.fmu.Unlock()
}

// SetRequestHook runs hook for every request before it is handled (nil removes it).
// The hook runs on the request's goroutine with no simulator lock held.
func (s *Server) SetRequestHook(hook func(*http.Request)) {
	s.fmu.Lock()
	s.hook = hook
	s.fmu.Unlock()
}

func (s *Server) takeFault(r *http.Request) (*Fault, func(*http.Request)) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for i, f := range s.faults {
		if (f.Method == "" || f.Method == r.Method) && strings.HasPrefix(r.URL.Path, f.Path) {
			if f.Times--; f.Times <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return f, s.hook
		}
	}
	return nil, s.hook
}

// discardWriter swallows a response whose request took effect under an After fault.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// Requests returns a copy of the request log.
func (s *Server) Requests() []RequestRecord {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return append([]RequestRecord(nil), s.reqs...)
}

// Exports returns a snapshot of the current export list.
func (s *Server) Exports() []Export {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exportListLocked()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(c int) {
	if w.status == 0 {
		w.status = c
	}
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// abandon ends a request the way a hung array does: no answer at all. Returning from the
// handler would make net/http send an empty 200, which goisilon reads as success;
// http.ErrAbortHandler makes the server drop the connection without writing.
func abandon(w http.ResponseWriter) {
	if sw, ok := w.(*statusWriter); ok {
		sw.status = 499 // logged as "client went away" by ServeHTTP
	}
	panic(http.ErrAbortHandler)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if sw.status == 0 {
			sw.status = 200
		}
		s.lmu.Lock()
		s.reqs = append(s.reqs, RequestRecord{r.Method, r.URL.Path, r.URL.RawQuery, sw.status})
		s.lmu.Unlock()
		s.opts.Logger.Printf("onefssim: %s %s %d %s", r.Method, r.URL.Path, sw.status, time.Since(start).Round(time.Microsecond))
	}()
	s.hmu.Lock()
	hang, hc, delay := s.hang, s.hangC, s.delay
	s.hmu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
			abandon(sw)
		case <-s.closed:
			abandon(sw)
		case <-hc:
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			abandon(sw)
		}
	}
	f, hook := s.takeFault(r)
	if hook != nil {
		hook(r)
	}
	switch {
	case f == nil:
		s.route(sw, r)
	case f.After:
		s.route(&discardWriter{h: http.Header{}}, r)
		writeError(sw, f.Status, f.Code, "", f.Message)
	default:
		writeError(sw, f.Status, f.Code, "", f.Message)
	}
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/session/1/session") && strings.Trim(strings.TrimPrefix(p, "/session/1/session"), "/") == "" {
		s.handleSession(w, r)
		return
	}
	if !s.authorize(w, r) {
		return
	}
	// A JSON body is read whole before any handler takes a lock, as OneFS's web server
	// hands a request to a worker of its own: a client slow to send its body must not hold
	// up the others. Object uploads stream (outside the lock, see nsCreate).
	if r.Body != nil && r.Body != http.NoBody && r.Header.Get("x-isi-ifs-target-type") != "object" {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, "AEC_BAD_REQUEST", "", "Unable to read the request body: "+err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	switch {
	case p == "/namespace" || strings.HasPrefix(p, "/namespace/"):
		s.handleNamespace(w, r)
	case strings.HasPrefix(p, "/platform/"):
		s.handlePlatform(w, r)
	default:
		writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", "Path not found: "+p)
	}
}

func (s *Server) handlePlatform(w http.ResponseWriter, r *http.Request) {
	parts := splitPath(strings.TrimPrefix(r.URL.Path, "/platform"))
	if len(parts) == 1 && parts[0] == "latest" {
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r)
			return
		}
		writeJSON(w, 200, map[string]any{"latest": s.opts.Latest})
		return
	}
	if len(parts) < 2 {
		notFoundPath(w, r)
		return
	}
	ver, err := strconv.Atoi(parts[0])
	latest, _ := strconv.Atoi(strings.SplitN(s.opts.Latest, ".", 2)[0])
	if err != nil || ver < 1 || ver > latest {
		notFoundPath(w, r)
		return
	}
	res := parts[1:]
	switch {
	case len(res) >= 2 && res[0] == "cluster":
		s.handleCluster(w, r, res[1:])
	case res[0] == "zones":
		s.handleZones(w, r, res[1:])
	case len(res) >= 2 && res[0] == "quota" && res[1] == "quotas":
		s.handleQuotas(w, r, res[2:])
	case len(res) == 2 && res[0] == "quota" && res[1] == "license":
		s.handleQuotaLicense(w, r)
	case len(res) == 4 && res[0] == "protocols" && res[1] == "nfs" && res[2] == "settings" && res[3] == "export":
		s.handleExportSettings(w, r)
	case len(res) >= 3 && res[0] == "protocols" && res[1] == "nfs" && res[2] == "exports":
		s.handleExports(w, r, res[3:])
	case len(res) >= 2 && res[0] == "snapshot" && res[1] == "snapshots":
		s.handleSnapshots(w, r, res[2:])
	case len(res) >= 2 && res[0] == "statistics":
		s.handleStatistics(w, r, res[1:])
	default:
		notFoundPath(w, r)
	}
}

func splitPath(p string) []string {
	var out []string
	for _, x := range strings.Split(p, "/") {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// ---- errors and JSON ----

type apiError struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, field, msg string) {
	writeJSON(w, status, map[string]any{"errors": []apiError{{Code: code, Field: field, Message: msg}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = 500
		b = []byte(`{"errors":[{"code":"AEC_EXCEPTION","message":"internal error"}]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeNoContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

func notFoundPath(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "AEC_NOT_FOUND", "", "Path not found: "+r.URL.Path)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusMethodNotAllowed, "AEC_METHOD_NOT_ALLOWED", "", "Method "+r.Method+" not allowed on "+r.URL.Path)
}

// maxJSONBody is the largest JSON body read; more fails to decode.
const maxJSONBody = 8 << 20

// decodeBody decodes a JSON request body; on failure it writes a 400 and
// returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "AEC_BAD_REQUEST", "", "Invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// ---- TLS ----

func selfSignedCert(listen string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "onefssim", Organization: []string{"shiphold onefssim"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost", "onefssim"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if ip == nil && h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
