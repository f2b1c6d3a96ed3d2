package isilon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dell/goisilon"
	"github.com/dell/goisilon/api"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
)

// Secret keys a StorageClass may pass (csi.storage.k8s.io/*-secret-name); they win over
// the backend's credentialsFile.
const (
	SecretUsername = "username"
	SecretPassword = "password"
)

// DefaultRequestTimeout bounds one Platform API request when the config sets none.
const DefaultRequestTimeout = 30 * time.Second

// Defaults of isilon.copyTimeout and isilon.copySettle.
const (
	DefaultCopyTimeout = 12 * time.Hour
	DefaultCopySettle  = 30 * time.Second
)

// goisilon's lowest log verbosity: method and URI only, never headers or bodies, so the
// session login body (which holds the password) is never logged.
const verboseLow = 2

type credentials struct {
	user, password string
}

// key identifies a credential pair in the client cache without keeping the password in it.
func (c credentials) key() string {
	sum := sha256.Sum256([]byte(c.user + "\x00" + c.password))
	return hex.EncodeToString(sum[:8])
}

// connector opens goisilon clients lazily and caches one per credential pair. A client is
// dropped after a transport or authentication failure, so the next call reconnects and
// rereads the credentials file.
type connector struct {
	cfg     *Config
	timeout time.Duration
	// copyTimeout bounds a clone's copy call; copySettle, see Config.CopySettle.
	copyTimeout, copySettle time.Duration
	auth                    uint8
	// open builds an array for credentials; replaced by unit tests.
	open func(ctx context.Context, cr credentials) (array, error)

	// slots bounds the operations in flight against the array (isilon.maxRequestsInFlight;
	// an operation sends its requests one after another, or two at once where neither
	// needs the other's answer: atOnce).
	slots chan struct{}

	mu      sync.Mutex
	clients map[string]array
}

// DefaultMaxRequestsInFlight is the bound on concurrent Platform API operations per backend
// when the config sets none: as many as the external-provisioner's bursts carry in make
// bench (32), so a burst is not queued inside the driver. It was 8 while goisilon kept 2
// idle connections and every further request paid a TLS handshake (CPU on both ends); with
// connections kept (keepConnections) a request in flight costs the array one PAPI worker.
// make bench, 5 ms per request, 3 requests per create, burst 128 at 32 on a loaded 2-core
// machine: 8 in flight made 265 creates/s (at most 8/15ms = 533), 32 made 375 (raw PAPI
// calls 703). A site whose PAPI is shared with heavier automation sets it lower.
const DefaultMaxRequestsInFlight = 32

func newConnector(cfg *Config) (*connector, error) {
	timeout, err := duration("requestTimeout", cfg.RequestTimeout, DefaultRequestTimeout)
	if err != nil {
		return nil, err
	}
	copyTimeout, err := duration("copyTimeout", cfg.CopyTimeout, DefaultCopyTimeout)
	if err != nil {
		return nil, err
	}
	copySettle, err := duration("copySettle", cfg.CopySettle, DefaultCopySettle)
	if err != nil {
		return nil, err
	}
	inFlight := cfg.MaxRequestsInFlight
	if inFlight <= 0 {
		inFlight = DefaultMaxRequestsInFlight
	}
	c := &connector{cfg: cfg, timeout: timeout, copyTimeout: copyTimeout, copySettle: copySettle,
		auth: 1, clients: map[string]array{}, slots: make(chan struct{}, inFlight)}
	if cfg.AuthType == "basic" {
		c.auth = 0
	}
	c.open = c.openPAPI
	return c, nil
}

func duration(key, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("isilon.%s %q is not a positive duration such as 30s", key, v)
	}
	return d, nil
}

// credentials picks the CSI secrets when they carry a username or password, else the file.
func (c *connector) credentials(secrets map[string]string) (credentials, error) {
	user, hasUser := secrets[SecretUsername]
	pass, hasPass := secrets[SecretPassword]
	if hasUser || hasPass {
		switch {
		case user == "":
			return credentials{}, backend.Errorf(backend.InvalidArgument, "isilon: the CSI secret has %q but no %q key", SecretPassword, SecretUsername)
		case pass == "":
			return credentials{}, backend.Errorf(backend.InvalidArgument, "isilon: the CSI secret has %q but no %q key", SecretUsername, SecretPassword)
		}
		return credentials{user: user, password: pass}, nil
	}
	if c.cfg.CredentialsFile == "" {
		return credentials{}, backend.Errorf(backend.InvalidArgument, "isilon %s: no credentials: pass CSI secret keys %q and %q, or set isilon.credentialsFile", c.cfg.Endpoint, SecretUsername, SecretPassword)
	}
	return readCredentialsFile(c.cfg.CredentialsFile)
}

// readCredentialsFile reads "username: x" and "password: y" lines.
func readCredentialsFile(path string) (credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return credentials{}, backend.Errorf(backend.InvalidArgument, "isilon: read credentialsFile %s: %v", path, err)
	}
	var cr credentials
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		switch strings.TrimSpace(k) {
		case SecretUsername:
			cr.user = v
		case SecretPassword:
			cr.password = v
		}
	}
	switch {
	case cr.user == "":
		return credentials{}, backend.Errorf(backend.InvalidArgument, "isilon: credentialsFile %s has no %q line", path, SecretUsername)
	case cr.password == "":
		return credentials{}, backend.Errorf(backend.InvalidArgument, "isilon: credentialsFile %s has no %q line", path, SecretPassword)
	}
	return cr, nil
}

// get returns the cached array for these secrets, connecting (and checking the OneFS
// version) on first use.
func (c *connector) get(ctx context.Context, secrets map[string]string) (array, string, error) {
	cr, err := c.credentials(secrets)
	if err != nil {
		// Calls that carry no secrets (list, capacity, get snapshot) reuse a client that
		// secrets opened earlier when there is no credentials file.
		if len(secrets) == 0 && c.cfg.CredentialsFile == "" {
			c.mu.Lock()
			defer c.mu.Unlock()
			for key, a := range c.clients {
				return a, key, nil
			}
		}
		return nil, "", err
	}
	key := cr.key()
	c.mu.Lock()
	a, ok := c.clients[key]
	c.mu.Unlock()
	if ok {
		return a, key, nil
	}
	release, err := c.takeSlot(ctx)
	if err != nil {
		return nil, "", err
	}
	a, err = c.open(ctx, cr)
	release()
	if err != nil {
		return nil, "", err
	}
	c.mu.Lock()
	if cached, ok := c.clients[key]; ok {
		a = cached // a concurrent call connected first
	} else {
		c.clients[key] = a
	}
	c.mu.Unlock()
	return a, key, nil
}

// forget drops a client after a failure that a new connection may cure.
func (c *connector) forget(key string, err error) {
	if key == "" || err == nil {
		return
	}
	var se *backend.StorageError
	if errors.As(err, &se) && (se.Code == backend.Unavailable || errors.Is(err, errCredentials)) {
		c.mu.Lock()
		delete(c.clients, key)
		c.mu.Unlock()
	}
}

// client is the cached array for a request's secrets, the isilon backend's
// backend.Handle: the array's own requests honour the request's context.
type client struct {
	array
	c   *connector
	key string
}

// storage is the backend's way to the array: the fakes of unit tests plug in at open.
func (c *connector) storage() backend.Storage[client] {
	return backend.Storage[client]{Name: "isilon " + c.cfg.Endpoint, Address: c.cfg.Endpoint, Connect: c.connect}
}

// connect returns the client for these secrets, connecting on first use.
func (c *connector) connect(ctx context.Context, secrets map[string]string) (client, error) {
	a, key, err := c.get(ctx, secrets)
	if err != nil {
		return client{}, err
	}
	return client{array: a, c: c, key: key}, nil
}

// Do runs fn, requests to the array, in one of the backend's slots, reconnecting next time
// if it fails in a way a new connection may cure. A request cut by its deadline fails as
// a Ceph call does (backend.NoAnswer), not as one the array's request timeout cut.
func (cl client) Do(ctx context.Context, fn func() error) error {
	release, err := cl.c.takeSlot(ctx)
	if err != nil {
		return err
	}
	defer release() // also when fn panics: the recovery interceptor keeps the plugin serving
	err = fn()
	cl.c.forget(cl.key, err)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) && backend.CodeOf(err) == backend.Unavailable {
		return backend.NoAnswer(ctx.Err(), "the request to the array was cancelled")
	}
	return err
}

// takeSlot waits for one of the operations in flight the backend allows.
func (c *connector) takeSlot(ctx context.Context) (release func(), err error) {
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	case <-ctx.Done():
		return nil, backend.Errorf(backend.Unavailable, "isilon %s: waited for a free connection until the deadline: %v (is the array slow or hung?)", c.cfg.Endpoint, ctx.Err())
	}
}

func (c *connector) openPAPI(ctx context.Context, cr credentials) (array, error) {
	open := func(timeout time.Duration) (*goisilon.Client, error) {
		cl, err := api.New(quiet(ctx), c.cfg.Endpoint, cr.user, cr.password, "", verboseLow, c.auth, &api.ClientOptions{
			Insecure:    c.cfg.InsecureSkipVerify,
			VolumesPath: c.cfg.IsiPath,
			Timeout:     timeout,
		})
		if err != nil {
			return nil, classify(err, c.cfg.Endpoint, "connect", c.timeout)
		}
		// An operation has up to two requests in flight (atOnce).
		if !keepConnections(cl, 2*cap(c.slots)) {
			klog.Warningf("isilon %s: cannot raise goisilon's idle connections to %d; requests past 2 in flight, and those after an answer goisilon leaves unread, open new connections", c.cfg.Endpoint, 2*cap(c.slots))
		}
		return &goisilon.Client{API: cl}, nil
	}
	short, err := open(c.timeout)
	if err != nil {
		return nil, err
	}
	// A copy is one synchronous call that lasts as long as the data takes: its own client,
	// so the request timeout does not cut it while the array goes on copying.
	long, err := open(c.copyTimeout)
	if err != nil {
		return nil, err
	}
	return &papi{c: short, copyC: long, endpoint: c.cfg.Endpoint, timeout: c.timeout}, nil
}

// errCredentials marks authentication failures, so the connector drops the client and the
// next call rereads the credentials.
var errCredentials = errors.New("check credentials")

// deniedAccess tells a 403 about the caller's rights from one about the object.
func deniedAccess(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "access denied") || strings.Contains(m, "permission denied") ||
		strings.Contains(m, "privilege") || strings.Contains(m, "not permitted") || strings.Contains(m, "unauthorized")
}

// classify maps a goisilon error onto a backend code, keeping the array's message.
func classify(err error, endpoint, what string, timeout time.Duration) error {
	if err == nil {
		return nil
	}
	var se *backend.StorageError
	if errors.As(err, &se) {
		return err
	}
	status, msg := 0, err.Error()
	var je *api.JSONError
	var he *api.HTMLError
	switch {
	case errors.As(err, &je):
		status = je.StatusCode
		if len(je.Err) > 0 {
			msgs := make([]string, 0, len(je.Err))
			for _, e := range je.Err {
				msgs = append(msgs, strings.TrimSpace(e.Code+" "+e.Message))
			}
			msg = strings.Join(msgs, "; ")
		}
	case errors.As(err, &he):
		status = he.StatusCode
	}
	switch {
	case status == 404:
		return &backend.StorageError{Code: backend.NotFound, Msg: fmt.Sprintf("isilon %s: %s: not found: %s", endpoint, what, msg), Err: err}
	case status == 401 || (status == 403 && deniedAccess(msg)) ||
		// goisilon's session re-login returns plain errors on bad credentials.
		strings.Contains(msg, "authentication failed") || strings.Contains(msg, "authentication failure"):
		return &backend.StorageError{Code: backend.InvalidArgument,
			Msg: fmt.Sprintf("isilon %s: %s: %s: check credentials (CSI secret keys %q/%q or isilon.credentialsFile) and the user's privileges", endpoint, what, msg, SecretUsername, SecretPassword),
			Err: errors.Join(errCredentials, err)}
	case status == 403:
		// OneFS answers 403 AEC_FORBIDDEN for an object in the way (an existing
		// destination, a non-empty directory), not only for missing privileges.
		return &backend.StorageError{Code: backend.FailedPrecondition, Msg: fmt.Sprintf("isilon %s: %s: the array refused: %s", endpoint, what, msg), Err: err}
	case status == 409:
		// AEC_CONFLICT is no "already exists": OneFS also answers it for configuration
		// writes that lost a race and for a delete racing a writer. Callers that may meet a
		// duplicate look for it on the array instead of trusting the code.
		return &backend.StorageError{Code: backend.Unavailable, Msg: fmt.Sprintf("isilon %s: %s: conflict on the array, retry: %s", endpoint, what, msg), Err: err}
	case status == 400:
		return &backend.StorageError{Code: backend.InvalidArgument, Msg: fmt.Sprintf("isilon %s: %s: %s", endpoint, what, msg), Err: err}
	case status >= 500:
		return &backend.StorageError{Code: backend.Unavailable, Msg: fmt.Sprintf("isilon %s: %s: array error %d: %s", endpoint, what, status, msg), Err: err}
	case status != 0:
		return &backend.StorageError{Code: backend.Internal, Msg: fmt.Sprintf("isilon %s: %s: HTTP %d: %s", endpoint, what, status, msg), Err: err}
	}
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return &backend.StorageError{Code: backend.Unavailable, Msg: fmt.Sprintf("isilon %s: %s: the array did not answer in time (request timeout %s): %v", endpoint, what, timeout, err), Err: err}
	case errors.Is(err, context.Canceled):
		return &backend.StorageError{Code: backend.Unavailable, Msg: fmt.Sprintf("isilon %s: %s: canceled: %v", endpoint, what, err), Err: err}
	case errors.As(err, &ue) || errors.As(err, &ne):
		return &backend.StorageError{Code: backend.Unavailable, Msg: fmt.Sprintf("isilon %s: %s: cannot reach the Platform API: %v", endpoint, what, err), Err: err}
	}
	return &backend.StorageError{Code: backend.Internal, Msg: fmt.Sprintf("isilon %s: %s: %v", endpoint, what, err), Err: err}
}
