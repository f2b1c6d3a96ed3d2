package ceph

import (
	"strings"
	"sync"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph/cephtest"
)

func rbdIdentity(pool string) Identity {
	return Identity{
		User: "shiphold.rbd.a",
		Caps: map[string]string{"mon": "profile rbd", "osd": "profile rbd pool=" + pool + " namespace=a"},
		KeepOSD: func(g string) bool {
			return strings.HasPrefix(g, "profile rbd pool=") && strings.HasSuffix(g, " namespace=a")
		},
	}
}

func TestEnsureIdentity(t *testing.T) {
	testCases := []struct {
		name     string
		existing map[string]string // caps of an existing client.shiphold.rbd.a
		pool     string
		wantOSD  string
		wantCmds []string
	}{
		{name: "new tenant", pool: "rbd", wantOSD: "profile rbd pool=rbd namespace=a",
			wantCmds: []string{"auth get", "auth get-or-create"}},
		{name: "exact caps: one read", pool: "rbd",
			existing: map[string]string{"mon": "profile rbd", "osd": "profile rbd pool=rbd namespace=a"},
			wantOSD:  "profile rbd pool=rbd namespace=a", wantCmds: []string{"auth get"}},
		{name: "second pool widens", pool: "ssd",
			existing: map[string]string{"mon": "profile rbd", "osd": "profile rbd pool=rbd namespace=a"},
			wantOSD:  "profile rbd pool=rbd namespace=a, profile rbd pool=ssd namespace=a", wantCmds: []string{"auth get", "auth caps"}},
		{name: "widened by hand: reset", pool: "rbd",
			existing: map[string]string{"mon": "allow *", "osd": "allow *, profile rbd pool=rbd namespace=b"},
			wantOSD:  "profile rbd pool=rbd namespace=a", wantCmds: []string{"auth get", "auth caps"}},
		{name: "two pools kept: no write", pool: "rbd",
			existing: map[string]string{"mon": "profile rbd", "osd": "profile rbd pool=rbd namespace=a, profile rbd pool=ssd namespace=a"},
			wantOSD:  "profile rbd pool=rbd namespace=a, profile rbd pool=ssd namespace=a", wantCmds: []string{"auth get"}},
		{name: "cap type added by hand: reset", pool: "rbd",
			existing: map[string]string{"mon": "profile rbd", "osd": "profile rbd pool=rbd namespace=a", "mds": "allow *"},
			wantOSD:  "profile rbd pool=rbd namespace=a", wantCmds: []string{"auth get", "auth caps"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			f := cephtest.NewAuth()
			if tc.existing != nil {
				f.Put(cephtest.Entry{Entity: "client.shiphold.rbd.a", Key: "OLD", Caps: tc.existing})
			}
			cred, err := EnsureIdentity(f, rbdIdentity(tc.pool))
			if err != nil {
				t.Fatal(err)
			}
			e, _ := f.Get("client.shiphold.rbd.a")
			if cred.UserID != "shiphold.rbd.a" || cred.Key != e.Key || cred.Key == "" {
				t.Errorf("credentials %s key %q, entity key %q", cred, cred.Key, e.Key)
			}
			if e.Caps["osd"] != tc.wantOSD || e.Caps["mon"] != "profile rbd" || len(e.Caps) != 2 {
				t.Errorf("caps = %v, want osd %q", e.Caps, tc.wantOSD)
			}
			if strings.Join(f.Calls(), ",") != strings.Join(tc.wantCmds, ",") {
				t.Errorf("commands %v, want %v", f.Calls(), tc.wantCmds)
			}
		})
	}
}

// Requests that race to make the same tenant's identity all get the one key.
func TestEnsureIdentityConcurrent(t *testing.T) {
	f := cephtest.NewAuth()
	keys := make([]string, 16)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cred, err := EnsureIdentity(f, rbdIdentity("rbd"))
			if err != nil {
				t.Error(err)
			}
			keys[i] = cred.Key
		}(i)
	}
	wg.Wait()
	for _, k := range keys {
		if k != keys[0] || k == "" {
			t.Fatalf("keys differ: %v", keys)
		}
	}
}

func TestEnsureIdentityDeniedSaysWhichCaps(t *testing.T) {
	f := cephtest.NewAuth()
	f.Deny = "auth get"
	_, err := EnsureIdentity(f, rbdIdentity("rbd"))
	if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), `allow command "auth get"`) {
		t.Fatalf("error = %v, want FailedPrecondition naming the auth caps", err)
	}
}

func TestRotateAndRemoveIdentity(t *testing.T) {
	f := cephtest.NewAuth()
	old, err := EnsureIdentity(f, rbdIdentity("rbd"))
	if err != nil {
		t.Fatal(err)
	}
	e0, _ := f.Get("client.shiphold.rbd.a")
	caps := e0.Caps
	ok, err := RotateIdentity(f, "shiphold.rbd.a")
	if err != nil || !ok {
		t.Fatalf("rotate = %v, %v", ok, err)
	}
	e, _ := f.Get("client.shiphold.rbd.a")
	if e.Key == old.Key || !sameCaps(e.Caps, caps) {
		t.Errorf("after rotation key %q (old %q), caps %v (were %v)", e.Key, old.Key, e.Caps, caps)
	}
	if ok, err := RotateIdentity(f, "shiphold.rbd.none"); ok || err != nil {
		t.Errorf("rotating a missing user = %v, %v; want false, nil", ok, err)
	}
	for i := 0; i < 2; i++ {
		if err := RemoveIdentity(f, "shiphold.rbd.a"); err != nil {
			t.Fatalf("remove #%d: %v", i+1, err)
		}
	}
	if _, ok := f.Get("client.shiphold.rbd.a"); ok {
		t.Error("identity still there after RemoveIdentity")
	}
}

func TestIdentityUser(t *testing.T) {
	if u, err := IdentityUser("ceph-rbd", "team-a"); err != nil || u != "shiphold.ceph-rbd.team-a" {
		t.Errorf("IdentityUser = %q, %v", u, err)
	}
	for _, bad := range [][2]string{{"a b", "t"}, {"b", "t/x"}, {"", "t"}, {"b", "t\n"}} {
		if _, err := IdentityUser(bad[0], bad[1]); backend.CodeOf(err) != backend.InvalidArgument {
			t.Errorf("IdentityUser(%q, %q) error = %v, want InvalidArgument", bad[0], bad[1], err)
		}
	}
}

func TestStageCredentials(t *testing.T) {
	pc := PublishContext(Credentials{UserID: "shiphold.rbd.a", Key: "TENANTKEY"})
	secrets := map[string]string{SecretUserID: "admin", SecretUserKey: "ADMINKEY"}
	cred, err := StageCredentials(DefaultCredentials{}, pc, secrets)
	if err != nil || cred.UserID != "shiphold.rbd.a" || cred.Key != "TENANTKEY" {
		t.Errorf("with a tenant identity: %s %q %v; want the tenant's, never the stage secret", cred, cred.Key, err)
	}
	cred, err = StageCredentials(DefaultCredentials{}, map[string]string{"other": "x"}, secrets)
	if err != nil || cred.UserID != "admin" {
		t.Errorf("published before identities: %s %v; want the node-stage secret", cred, err)
	}
	if _, err := StageCredentials(DefaultCredentials{}, map[string]string{PublishContextUser: "u"}, secrets); backend.CodeOf(err) != backend.InvalidArgument {
		t.Errorf("half an identity: %v, want InvalidArgument", err)
	}
}
