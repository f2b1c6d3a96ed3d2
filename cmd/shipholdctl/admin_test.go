package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// storage answers the calls the admin commands make; the embedded nil interface panics on
// anything else.
type storage struct {
	backend.Controller
	kind  string
	vols  []*backend.Volume
	down  error
	avail int64
}

func (s storage) Kind() string                { return s.kind }
func (s storage) Probe(context.Context) error { return s.down }
func (s storage) Capacity(context.Context, map[string]string) (int64, error) {
	return s.avail, nil
}
func (s storage) ListVolumes(_ context.Context, tenant string) ([]*backend.Volume, error) {
	var out []*backend.Volume
	for _, v := range s.vols {
		if tenant == "" || v.ID.Tenant == tenant {
			out = append(out, v)
		}
	}
	return out, nil
}

func withStorage(t *testing.T, ctrls map[string]backend.Controller) string {
	t.Helper()
	prev := openBackends
	openBackends = func(*config.Config) (map[string]backend.Controller, func(), error) { return ctrls, func() {}, nil }
	t.Cleanup(func() { openBackends = prev })
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte(`
backends:
  - {name: ceph-rbd, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: rbd}}
  - {name: isilon, kind: isilon, isilon: {endpoint: "https://x", isiPath: /ifs/data/s, nfsServer: n, zones: [{name: hpc, key: hpc, isiPath: /ifs/hpc/s, nfsServer: sc-hpc}]}}
tenants:
  default: {maxVolumes: 10}
  overrides: {shop: {maxVolumes: 3, maxBytes: 10737418240}}
`), 0o600)
	return cfg
}

func vol(b, tenant, name string, size int64) *backend.Volume {
	return &backend.Volume{ID: volid.Volume{Backend: b, Tenant: tenant, Hash: volid.Hash(name)}, CapacityBytes: size, RequestName: name}
}

func TestAdminCommands(t *testing.T) {
	cfg := withStorage(t, map[string]backend.Controller{
		"ceph-rbd": storage{kind: "rbd", avail: 5 << 30, vols: []*backend.Volume{vol("ceph-rbd", "shop", "pvc-db", 2<<30), vol("ceph-rbd", "blog", "pvc-wp", 1<<30)}},
		"isilon":   storage{kind: "isilon", down: errors.New("https://x: connection refused"), vols: []*backend.Volume{vol("isilon", "shop", "pvc-media", 512<<20)}},
	})
	var out, errb bytes.Buffer
	if code := run([]string{"backends", "--config", cfg}, &out, &errb); code != 1 {
		t.Fatalf("backends with one unreachable: exit %d, want 1\n%s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"ceph-rbd  rbd     reachable", "5.0 GiB", "isilon    isilon  UNREACHABLE: https://x: connection refused"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("backends output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"volumes", "--config", cfg, "--tenant", "shop"}, &out, &errb); code != 0 {
		t.Fatalf("volumes: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "pvc-db") || !strings.Contains(out.String(), "pvc-media") || strings.Contains(out.String(), "pvc-wp") {
		t.Fatalf("volumes --tenant shop:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"tenants", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("tenants: exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "blog") || !strings.Contains(lines[1], "unlimited") || !strings.Contains(lines[1], "10") {
		t.Fatalf("tenants table:\n%s", out.String())
	}
	for _, want := range []string{"shop", "2", "2.5 GiB", "3", "10.0 GiB", "ceph-rbd: 1 (2.0 GiB), isilon: 1 (512.0 MiB)"} {
		if !strings.Contains(lines[2], want) {
			t.Fatalf("shop's row lacks %q: %s", want, lines[2])
		}
	}
	errb.Reset()
	if code := run([]string{"tenants", "--config", "/nonexistent.yaml"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "nonexistent.yaml") {
		t.Fatalf("missing config: exit %d, %q", code, errb.String())
	}
}

// collecting is a backend with deletes finishing in the background.
type collecting struct {
	storage
	left []backend.Leftover
}

func (c collecting) Leftovers(context.Context) ([]backend.Leftover, error) { return c.left, nil }
func (c collecting) Collect(context.Context) ([]backend.Leftover, error)   { return c.left, nil }

func TestLeftoversCommand(t *testing.T) {
	cfg := withStorage(t, map[string]backend.Controller{
		"ceph-rbd": collecting{storage: storage{kind: "rbd"}, left: []backend.Leftover{{Backend: "ceph-rbd", Tenant: "shop", Kind: "trash entry",
			Name: "rbd/shop/1f2e3d (image csi-vol-0123456789abcdef)", State: "purge queued"}}},
		"isilon": storage{kind: "isilon"},
	})
	var out, errb bytes.Buffer
	if code := run([]string{"leftovers", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("leftovers: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"BACKEND", "ceph-rbd  shop    trash entry", "csi-vol-0123456789abcdef", "purge queued"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("leftovers output lacks %q:\n%s", want, out.String())
		}
	}
}
