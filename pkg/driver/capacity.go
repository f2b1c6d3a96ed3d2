package driver

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"
)

// capacityFresh is how long one backend's capacity reading answers GetCapacity: the CO polls
// it per class and topology segment (external-provisioner every minute), and each reading is
// a `ceph df` or a PAPI call; a volume created since shows at the next reading.
const capacityFresh = 30 * time.Second

// capacityCache keeps the last good reading per backend and parameters.
type capacityCache struct {
	mu       sync.Mutex
	readings map[string]capacityReading
}

type capacityReading struct {
	bytes int64
	at    time.Time
}

// capacityOf is the backend's Capacity, read at most once per capacityFresh for the same
// parameters; failures are not kept.
func (d *ControllerServer) capacityOf(ctx context.Context, name string, params map[string]string) (int64, error) {
	key := capacityKey(name, params)
	c := &d.capacity
	c.mu.Lock()
	r, ok := c.readings[key]
	c.mu.Unlock()
	if ok && time.Since(r.at) < capacityFresh {
		return r.bytes, nil
	}
	bytes, err := d.opts.Controllers[name].Capacity(ctx, params)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.readings == nil {
		c.readings = map[string]capacityReading{}
	}
	c.readings[key] = capacityReading{bytes: bytes, at: time.Now()}
	c.mu.Unlock()
	return bytes, nil
}

func capacityKey(name string, params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + params[k])
	}
	return b.String()
}
