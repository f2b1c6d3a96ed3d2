package endpoint

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// volumes is a controller that holds volumes in memory; the embedded nil interface panics
// on any call the target logic should not make.
type volumes struct {
	backend.Controller
	name    string
	vols    []*backend.Volume
	created int
}

func (c *volumes) ListVolumes(_ context.Context, tenant string) ([]*backend.Volume, error) {
	var out []*backend.Volume
	for _, v := range c.vols {
		if tenant == "" || v.ID.Tenant == tenant {
			out = append(out, v)
		}
	}
	return out, nil
}

func (c *volumes) CreateVolume(_ context.Context, r *backend.VolumeRequest) (*backend.Volume, error) {
	for _, v := range c.vols {
		if v.RequestName == r.Name {
			return v, nil
		}
	}
	c.created++
	v := &backend.Volume{ID: r.ID(c.name, "1"), CapacityBytes: r.RequiredBytes, RequestName: r.Name}
	c.vols = append(c.vols, v)
	return v, nil
}

func env(c *volumes, q config.TenantQuota) *Env {
	return &Env{Config: &config.Config{Tenants: config.Tenants{Default: q}}, Controllers: map[string]backend.Controller{c.name: c}}
}

func TestTargetCountsAgainstTheTenantQuota(t *testing.T) {
	c := &volumes{name: "ceph-fs", vols: []*backend.Volume{{ID: volid.Volume{Backend: "ceph-fs", Tenant: "shop", Hash: "a"}, CapacityBytes: 8 << 30}}}
	e := env(c, config.TenantQuota{MaxBytes: 10 << 30})
	r := TargetRequest{Backend: "ceph-fs", Tenant: "shop", Name: TargetName("v1:isilon:shop::0123456789abcdef"), Bytes: 4 << 30}
	_, err := e.EnsureTarget(context.Background(), r)
	if backend.CodeOf(err) != backend.ResourceExhausted || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("a target past the quota: %v", err)
	}
	if c.created != 0 {
		t.Fatal("the volume was created before the quota refused it")
	}
	r.Bytes = 2 << 30
	v, err := e.EnsureTarget(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	// Again (a rerun): the volume exists and is counted already, so the quota, now full,
	// does not refuse it.
	e.Config.Tenants.Default.MaxBytes = 10 << 30
	again, err := e.EnsureTarget(context.Background(), r)
	if err != nil || again.ID != v.ID || c.created != 1 {
		t.Fatalf("rerun: %v, %v (created %d)", again, err, c.created)
	}
}

func TestTargetNameIsTheSourcesOwn(t *testing.T) {
	a, b := TargetName("pvc:shop/site"), TargetName("pvc:shop/site")
	if a != b || a == TargetName("pvc:shop/other") || !strings.HasPrefix(a, "shiphold-migrate-") {
		t.Fatalf("names %q %q", a, b)
	}
}

func TestOpenLocation(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("hi"), 0o644)
	s, err := OpenLocation(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, err := s.FS.Lstat("index.html"); err != nil || a.Size != 2 {
		t.Fatalf("lstat through the opened location: %+v %v", a, err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), "nfs://", "http://x/y"} {
		if _, err := OpenLocation(bad, 2); err == nil {
			t.Errorf("OpenLocation(%q) accepted", bad)
		}
	}
}
