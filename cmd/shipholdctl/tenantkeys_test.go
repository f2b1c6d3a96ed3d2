package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

// rotating is a Ceph backend that knows some tenants' identities.
type rotating struct {
	storage
	known   map[string]bool
	fail    error
	rotated *[]string
}

func (r rotating) RotateTenantKey(_ context.Context, tenant string) (bool, error) {
	if r.fail != nil {
		return false, r.fail
	}
	if r.known[tenant] {
		*r.rotated = append(*r.rotated, r.kind+":"+tenant)
	}
	return r.known[tenant], nil
}

func TestTenantsRotateKey(t *testing.T) {
	var rotated []string
	cfg := withStorage(t, map[string]backend.Controller{
		"ceph-rbd": rotating{storage: storage{kind: "rbd"}, known: map[string]bool{"shop": true}, rotated: &rotated},
		"ceph-fs":  rotating{storage: storage{kind: "cephfs"}, known: map[string]bool{}, rotated: &rotated},
		"isilon":   storage{kind: "isilon"},
	})
	var out, errb bytes.Buffer
	if code := run([]string{"tenants", "rotate-key", "shop", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("rotate-key: exit %d: %s", code, errb.String())
	}
	if len(rotated) != 1 || rotated[0] != "rbd:shop" {
		t.Errorf("rotated %v, want the rbd backend's identity of shop only", rotated)
	}
	for _, want := range []string{"backend ceph-rbd: client.shiphold.ceph-rbd.shop has a new key; the old one is revoked", "backend ceph-fs: tenant shop has no identity here"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "isilon") {
		t.Errorf("an Isilon backend has no tenant keys:\n%s", out.String())
	}

	errb.Reset()
	if code := run([]string{"tenants", "rotate-key", "Not/A/Tenant", "--config", cfg}, &out, &errb); code != 2 {
		t.Errorf("invalid tenant: exit %d, %s", code, errb.String())
	}
	if code := run([]string{"tenants", "rotate-key", "--config", cfg}, &out, &errb); code == 0 {
		t.Error("rotate-key without a tenant succeeded")
	}
	withStorage(t, map[string]backend.Controller{
		"ceph-rbd": rotating{storage: storage{kind: "rbd"}, fail: errors.New("permission denied; give the user mon caps"), rotated: &rotated},
	})
	errb.Reset()
	if code := run([]string{"tenants", "rotate-key", "shop", "--config", cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "backend ceph-rbd: permission denied") {
		t.Errorf("failed rotation: exit %d, %q", code, errb.String())
	}
}
