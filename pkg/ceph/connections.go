package ceph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ceph/go-ceph/rados"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
)

// connectTimeout bounds a connect (librados client_mount_timeout); osdOpTimeout is how long
// librados waits for an OSD before it cancels an op, unless the backend's confFile says.
const (
	connectTimeout = 10 * time.Second
	osdOpTimeout   = 30 * time.Second
)

// Conn is one pooled rados handle. Every call on it must run inside Do: the handle's mon
// and mgr commands wait for Ceph's answer however long it takes, and Do is what bounds them.
type Conn struct {
	Calls
	handle  *rados.Conn
	user    string // backend, cluster and user, without the key
	account string // cluster and user: Ceph keeps one key per user and cluster
	digest  string // a digest of the key
	fs      fsMounts
}

// Rados is the handle for librados/librbd calls; use it only inside Do.
func (c *Conn) Rados() *rados.Conn { return c.handle }

// MonCommand sends a monitor command; use it only inside Do.
func (c *Conn) MonCommand(args []byte) ([]byte, string, error) { return c.handle.MonCommand(args) }

// MgrCommand sends a mgr command; use it only inside Do.
func (c *Conn) MgrCommand(args [][]byte) ([]byte, string, error) { return c.handle.MgrCommand(args) }

// Connections keeps one connected rados handle per (backend, cluster, user, key) and hands it out
// to all the backend's requests; librados is thread-safe and reconnects to monitors by
// itself. Backends do not share handles, so calls stranded on one backend's silent daemon
// (a CephFS mgr) never use up another's allowance (MaxStranded). A handle that
// the cluster blocklisted, whose key it refuses, that keeps timing out, or whose user now
// has another key, is replaced; it is shut down only after its last call returns.
type Connections struct {
	mu       sync.Mutex
	conns    map[string]*Conn
	dials    map[string]*dial
	stranded map[string]*atomic.Int64 // abandoned calls per backend, cluster and user, across handles
	closed   bool

	// connect, shutdown and mountFS are librados's and libcephfs's; unit tests replace them.
	connect  func(Cluster, Credentials) (*rados.Conn, error)
	shutdown func(*rados.Conn)
	mountFS  func(*rados.Conn, string) (fsTree, error)
}

// dial is one connect in progress; the requests that need it wait for done.
type dial struct {
	done chan struct{}
	conn *Conn
	err  error
}

// NewConnections returns an empty set of connections.
func NewConnections() *Connections {
	return &Connections{
		conns: map[string]*Conn{}, dials: map[string]*dial{}, stranded: map[string]*atomic.Int64{},
		connect: connect, shutdown: (*rados.Conn).Shutdown, mountFS: mountLibcephfs,
	}
}

func userKey(backendName string, cluster Cluster, cred Credentials) string {
	return backendName + "|" + accountKey(cluster, cred)
}

func accountKey(cluster Cluster, cred Credentials) string {
	return cluster.ClusterID + "|" + strings.Join(cluster.Monitors, ",") + "|" + cred.UserID
}

func connKey(user string, cred Credentials) string {
	return user + "|" + keyDigest(cred)
}

func keyDigest(cred Credentials) string {
	sum := sha256.Sum256([]byte(cred.Key))
	return hex.EncodeToString(sum[:8])
}

// Conn returns backendName's pooled connection for cluster and cred, connecting on first
// use and after the last one was found broken. One connect per key runs at a time; it is
// not cut short by ctx, so a slow monitor still ends with a usable (or shut) handle.
func (p *Connections) Conn(ctx context.Context, backendName string, cluster Cluster, cred Credentials) (*Conn, error) {
	user := userKey(backendName, cluster, cred)
	key := connKey(user, cred)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, backend.Errorf(backend.Unavailable, "the Ceph connection pool is closed")
	}
	if c := p.conns[key]; c != nil {
		why := c.unhealthy()
		if why == "" {
			p.mu.Unlock()
			return c, nil
		}
		delete(p.conns, key)
		klog.Warningf("replacing the connection to Ceph cluster %s as %s: %s", cluster.ClusterID, cred, why)
		c.retire(why)
	}
	d := p.dials[key]
	if d == nil {
		d = &dial{done: make(chan struct{})}
		p.dials[key] = d
		go p.dial(d, key, user, accountKey(cluster, cred), cluster, cred)
	}
	p.mu.Unlock()
	select {
	case <-d.done:
		return d.conn, d.err
	case <-ctx.Done():
		return nil, backend.Errorf(backend.Unavailable, "connecting to Ceph cluster %s at monitors %s: no answer before the request deadline (%w)",
			cluster.ClusterID, strings.Join(cluster.Monitors, ","), ctx.Err())
	}
}

func (p *Connections) dial(d *dial, key, user, account string, cluster Cluster, cred Credentials) {
	handle, err := p.connect(cluster, cred)
	p.mu.Lock()
	defer func() {
		p.mu.Unlock()
		close(d.done)
	}()
	delete(p.dials, key)
	if err != nil {
		d.err = err
		return
	}
	if p.closed {
		go p.shutdown(handle)
		d.err = backend.Errorf(backend.Unavailable, "the Ceph connection pool is closed")
		return
	}
	if p.stranded[user] == nil {
		p.stranded[user] = new(atomic.Int64)
	}
	c := &Conn{handle: handle, user: user, account: account, digest: keyDigest(cred)}
	c.born, c.stranded = time.Now(), p.stranded[user]
	c.fs.mount = func(fsName string) (fsTree, error) { return p.mountFS(handle, fsName) }
	// The libcephfs mounts share the handle's configuration: they go first.
	c.onIdle = func() {
		go func() {
			c.fs.closeAll()
			p.shutdown(handle)
		}()
	}
	// A user's new key means the old one was rotated away: the handles made with it, by
	// this backend or any other of the same cluster, are finished (Ceph keeps one key per
	// user, and an idle handle would otherwise stay connected with the rotated key).
	for k, old := range p.conns {
		if old.account == account && old.digest != c.digest {
			delete(p.conns, k)
			old.retire("the user's key changed")
		}
	}
	p.conns[key] = c
	d.conn = c
}

func connect(cluster Cluster, cred Credentials) (*rados.Conn, error) {
	conn, err := rados.NewConnWithUser(cred.UserID)
	if err != nil {
		return nil, backend.Errorf(backend.Internal, "create rados handle: %v", err)
	}
	if err := configure(conn, cluster, cred); err != nil {
		conn.Shutdown()
		return nil, err
	}
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return nil, backend.Errorf(backend.Unavailable, "cannot connect to Ceph cluster %s at monitors %s as %s: %v; check the monitors and the cephx key",
			cluster.ClusterID, strings.Join(cluster.Monitors, ","), cred, err)
	}
	return conn, nil
}

// configure sets the handle's options. rados_mon_op_timeout stays 0 whatever a confFile
// says: with a timeout, librados 16.2's rados_mgr_command returns while the mgr may still
// answer into the caller's freed buffers (ceph tracker 65985), so mon and mgr commands wait
// for their answer and Do bounds them instead. OSD ops are cancelled cleanly by librados.
func configure(conn *rados.Conn, cluster Cluster, cred Credentials) error {
	if cluster.ConfFile != "" {
		if err := conn.ReadConfigFile(cluster.ConfFile); err != nil {
			return backend.Errorf(backend.InvalidArgument, "read ceph config %s: %v", cluster.ConfFile, err)
		}
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) }
	opts := [][2]string{
		{"mon_host", strings.Join(cluster.Monitors, ",")},
		{"key", cred.Key},
		{"client_mount_timeout", secs(connectTimeout)},
		{"rados_mon_op_timeout", "0"},
	}
	if v, err := conn.GetConfigOption("rados_osd_op_timeout"); err != nil || v == "0" {
		opts = append(opts, [2]string{"rados_osd_op_timeout", secs(osdOpTimeout)})
	}
	for _, o := range opts {
		if err := conn.SetConfigOption(o[0], o[1]); err != nil {
			return backend.Errorf(backend.InvalidArgument, "ceph option %s: %v", o[0], err)
		}
	}
	return nil
}

// Close stops handing connections out; each is shut down when its last call returns.
func (p *Connections) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, c := range p.conns {
		delete(p.conns, k)
		c.retire("the plugin is stopping")
	}
}
