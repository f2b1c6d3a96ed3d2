package tenant

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// listOnly is a backend.Controller that only lists; the embedded nil interface panics on
// anything else, which these tests must not call.
type listOnly struct {
	backend.Controller
	vols []*backend.Volume
	err  error
}

func (l listOnly) ListVolumes(_ context.Context, tenant string) ([]*backend.Volume, error) {
	var out []*backend.Volume
	for _, v := range l.vols {
		if tenant == "" || v.ID.Tenant == tenant {
			out = append(out, v)
		}
	}
	return out, l.err
}

func vol(backendName, tenant, name string, bytes int64) *backend.Volume {
	return &backend.Volume{ID: volid.Volume{Backend: backendName, Tenant: tenant, Hash: volid.Hash(name)}, CapacityBytes: bytes}
}

func TestVolumesAndSummarize(t *testing.T) {
	ctrls := map[string]backend.Controller{
		"rbd":    listOnly{vols: []*backend.Volume{vol("rbd", "shop", "a", 10), vol("rbd", "blog", "b", 5)}},
		"isilon": listOnly{vols: []*backend.Volume{vol("isilon", "shop", "c", 100)}},
	}
	all, err := Volumes(context.Background(), ctrls, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("all volumes: %d, %v", len(all), err)
	}
	shop, err := Volumes(context.Background(), ctrls, "shop")
	if err != nil || len(shop) != 2 {
		t.Fatalf("shop's volumes: %d, %v", len(shop), err)
	}
	quotas := config.Tenants{Default: config.TenantQuota{MaxVolumes: 2}, Overrides: map[string]config.TenantQuota{"blog": {MaxBytes: 8}}}
	usage := Summarize(all, quotas)
	if len(usage) != 2 || usage[0].Tenant != "blog" || usage[1].Tenant != "shop" {
		t.Fatalf("tenants: %+v", usage)
	}
	s := usage[1]
	if s.Volumes != 2 || s.Bytes != 110 || s.ByBackend["isilon"].Bytes != 100 || s.ByBackend["rbd"].Volumes != 1 {
		t.Fatalf("shop usage: %+v", s)
	}
	if why := s.Admits(1); !strings.Contains(why, "quota is 2 volumes") {
		t.Fatalf("shop at its volume quota admits more: %q", why)
	}
	if why := usage[0].Admits(4); !strings.Contains(why, "quota of 8 bytes") {
		t.Fatalf("blog over its byte quota: %q", why)
	}
	if why := usage[0].Admits(3); why != "" {
		t.Fatalf("blog within quota refused: %q", why)
	}
	ctrls["broken"] = listOnly{err: errors.New("monitors down")}
	if _, err := Volumes(context.Background(), ctrls, ""); err == nil || !strings.Contains(err.Error(), `"broken"`) {
		t.Fatalf("a failing backend is not named: %v", err)
	}
}
