// Package rbd is the Ceph RBD backend: images in a per-tenant RADOS namespace of a pool on
// the controller side (go-ceph librbd), and krbd, rbd-nbd or rbd-fuse plus a loop device on
// the node side.
package rbd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
)

// Controller provisions RBD images for one configured backend.
type Controller struct {
	name string
	cfg  Config
	// storage runs a request's work on the pooled connection for its secrets (the
	// configured credentials when there are none), in one Do: every librados/librbd
	// resource the work opens is released on the work's goroutine even when the request's
	// deadline passes first, and mgr and mon commands run on that handle inside that Do.
	storage backend.Storage[connection]

	// namespaces makes or checks the tenant's RADOS namespace of a pool ("pool/ns") once
	// among concurrent creates and remembers it, saving a round trip per CreateVolume; a
	// namespace removed behind our back is re-created on ENOENT.
	namespaces backend.TenantSetup
	// identities makes or checks the tenant identity with a grant on a pool
	// ("pool/tenant") once among concurrent creates and remembers it, saving a mon command
	// per CreateVolume; forgotten when this controller removes the identity. One removed
	// behind our back is made again by the volume's publish, which always checks it (it
	// hands the key to the node).
	identities backend.TenantSetup
	mu         sync.Mutex
	// deleting counts the DeleteVolume calls in progress per image ("tenant/pool/image"):
	// the search for a tenant's other images counts those as gone.
	deleting map[string]int
	// retired are the clients of ours replaced for an image librbd left open on them
	// (leakedOpen), by instance ID, with when: their watches linger until Ceph drops them.
	retired map[uint64]time.Time

	taskWait time.Duration // see SetTaskWait
	// purges holds the trash purges waiting for room in the mgr's queue (purgefeed.go).
	purges *purgeFeed
}

var (
	_ backend.Controller = (*Controller)(nil)
	_ backend.Publisher  = (*Controller)(nil)
)

// NewController returns the controller side of an rbd backend.
func NewController(cfg *config.Backend, conns *ceph.Connections) (*Controller, error) {
	rc, err := config.SectionAs[*Config](cfg)
	if err != nil {
		return nil, fmt.Errorf("rbd backend: %w", err)
	}
	if cfg.Kind != backend.KindRBD {
		return nil, fmt.Errorf("rbd backend %q: kind is %q", cfg.Name, cfg.Kind)
	}
	if conns == nil {
		return nil, fmt.Errorf("rbd backend %q: no connection pool", cfg.Name)
	}
	if _, err := resolveOptions(nil, rc.Pool, rc.ImageFeatures, rc.Mounter); err != nil {
		return nil, fmt.Errorf("rbd backend %q config: %v", cfg.Name, err)
	}
	rbd := *rc
	connect := func(ctx context.Context, secrets map[string]string) (connection, error) {
		cred, err := ceph.CredentialsFor(rbd.Credentials, secrets)
		if err != nil {
			return nil, err
		}
		conn, err := conns.Conn(ctx, cfg.Name, rbd.Cluster, cred)
		if err != nil {
			return nil, err
		}
		return cephConn{conn}, nil
	}
	c := newController(cfg.Name, rbd, connect)
	if _, err := ceph.CredentialsFor(rbd.Credentials, nil); err != nil {
		// Only requests bring keys: no feeder could queue a held purge later.
		c.purges.max = 0
	}
	return c, nil
}

func newController(name string, cfg Config, connect func(context.Context, map[string]string) (connection, error)) *Controller {
	monitors := strings.Join(cfg.Monitors, ",")
	storage := backend.Storage[connection]{
		Name:    fmt.Sprintf("Ceph cluster %s (monitors %s)", cfg.ClusterID, monitors),
		Address: monitors,
		Connect: connect,
	}
	return &Controller{name: name, cfg: cfg, storage: storage, deleting: map[string]int{}, taskWait: defaultTaskWait,
		purges: newPurgeFeed(maxQueuedPurges)}
}

func (c *Controller) Name() string { return c.name }
func (c *Controller) Kind() string { return backend.KindRBD }
func (c *Controller) Close()       { c.purges.close() }

func (c *Controller) ParameterKeys() []string {
	return []string{ParamPool, ParamImageFeatures, ParamMounter}
}

// Capacity reports the pool's max_avail from the monitors' df: what new volumes can still use.
func (c *Controller) Capacity(ctx context.Context, params map[string]string) (int64, error) {
	pool := params[ParamPool]
	if pool == "" {
		pool = c.cfg.Pool
	}
	var avail int64
	err := c.storage.Do(ctx, nil, func(conn connection) error {
		all, err := ceph.PoolsAvailable(conn)
		if err != nil {
			return classify(err, "ceph df")
		}
		a, err := maxAvail(all, pool)
		avail = a
		return err
	})
	return avail, err
}

// maxAvail picks the pool's entry from ceph.PoolsAvailable.
func maxAvail(avail map[string]int64, pool string) (int64, error) {
	a, ok := avail[pool]
	if !ok {
		return 0, backend.Errorf(backend.InvalidArgument, "pool %q does not exist; fix the StorageClass parameter %q or the backend's pool", pool, ParamPool)
	}
	return a, nil
}

// Probe asks the monitors for the cluster's fsid-bearing status, the cheapest round trip that
// proves the monitors answer.
func (c *Controller) Probe(ctx context.Context) error {
	if _, err := ceph.CredentialsFor(c.cfg.Credentials, nil); err != nil {
		// Without configured credentials only requests bring keys; nothing to probe with.
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.storage.Do(ctx, nil, func(conn connection) error {
		_, _, err := conn.MonCommand([]byte(`{"prefix":"mon stat","format":"json"}`))
		return classify(err, "mon stat")
	})
}
