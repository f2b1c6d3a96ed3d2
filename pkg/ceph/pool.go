package ceph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

// Timeouts bound every librados call, so that an unreachable cluster fails a request
// instead of hanging it; go-ceph calls take no context.
const (
	connectTimeout = 10 * time.Second
	opTimeout      = 30 * time.Second
)

// Pool keeps one connected rados handle per (cluster, user, key) and hands it out to all
// requests; librados is thread-safe and reconnects to monitors by itself.
type Pool struct {
	mu    sync.Mutex
	conns map[string]*rados.Conn
	// dialing serialises connects per key so a burst makes one connection, not many.
	dialing map[string]*sync.Mutex
}

// NewPool returns an empty pool.
func NewPool() *Pool {
	return &Pool{conns: map[string]*rados.Conn{}, dialing: map[string]*sync.Mutex{}}
}

func poolKey(cluster config.CephCluster, cred Credentials) string {
	sum := sha256.Sum256([]byte(cred.Key))
	return cluster.ClusterID + "|" + strings.Join(cluster.Monitors, ",") + "|" + cred.UserID + "|" + hex.EncodeToString(sum[:8])
}

// Conn returns the pooled connection for cluster and cred, connecting on first use.
func (p *Pool) Conn(ctx context.Context, cluster config.CephCluster, cred Credentials) (*rados.Conn, error) {
	key := poolKey(cluster, cred)
	p.mu.Lock()
	if c, ok := p.conns[key]; ok {
		p.mu.Unlock()
		return c, nil
	}
	dial, ok := p.dialing[key]
	if !ok {
		dial = &sync.Mutex{}
		p.dialing[key] = dial
	}
	p.mu.Unlock()

	dial.Lock()
	defer dial.Unlock()
	p.mu.Lock()
	if c, ok := p.conns[key]; ok {
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()

	conn, err := connect(ctx, cluster, cred)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.conns[key] = conn
	p.mu.Unlock()
	return conn, nil
}

func connect(ctx context.Context, cluster config.CephCluster, cred Credentials) (*rados.Conn, error) {
	conn, err := rados.NewConnWithUser(cred.UserID)
	if err != nil {
		return nil, backend.Errorf(backend.Internal, "create rados handle: %v", err)
	}
	if cluster.ConfFile != "" {
		if err := conn.ReadConfigFile(cluster.ConfFile); err != nil {
			conn.Shutdown()
			return nil, backend.Errorf(backend.InvalidArgument, "read ceph config %s: %v", cluster.ConfFile, err)
		}
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) }
	opts := [][2]string{
		{"mon_host", strings.Join(cluster.Monitors, ",")},
		{"key", cred.Key},
		{"client_mount_timeout", secs(connectTimeout)},
		{"rados_mon_op_timeout", secs(opTimeout)},
		{"rados_osd_op_timeout", secs(opTimeout)},
	}
	for _, o := range opts {
		if err := conn.SetConfigOption(o[0], o[1]); err != nil {
			conn.Shutdown()
			return nil, backend.Errorf(backend.InvalidArgument, "ceph option %s: %v", o[0], err)
		}
	}
	err = Do(ctx, conn.Connect)
	if err != nil {
		conn.Shutdown()
		if backend.CodeOf(err) != backend.Internal {
			return nil, err
		}
		return nil, backend.Errorf(backend.Unavailable, "cannot connect to Ceph cluster %s at monitors %s as %s: %v; check the monitors and the cephx key",
			cluster.ClusterID, strings.Join(cluster.Monitors, ","), cred, err)
	}
	return conn, nil
}

// Forget drops a connection that keeps failing, so the next request reconnects.
func (p *Pool) Forget(cluster config.CephCluster, cred Credentials) {
	key := poolKey(cluster, cred)
	p.mu.Lock()
	c, ok := p.conns[key]
	delete(p.conns, key)
	p.mu.Unlock()
	if ok {
		go c.Shutdown()
	}
}

// Close shuts all connections down.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.conns {
		c.Shutdown()
		delete(p.conns, k)
	}
}

// Do runs a blocking librados/librbd call and returns early, classified Unavailable, if ctx
// ends first. The call itself finishes in the background within the op timeout; callers are
// idempotent, so a retry finds whatever it did.
func Do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return backend.Errorf(backend.Unavailable, "ceph call not started: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return backend.Errorf(backend.Unavailable, "Ceph did not answer before the request deadline (%w); the cluster may be unreachable", ctx.Err())
	}
}
