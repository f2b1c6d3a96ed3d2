package ceph

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

// fakeAuth is the monitor's auth database as the auth commands see it.
type fakeAuth struct {
	mu       sync.Mutex
	entities map[string]authEntry
	next     int
	calls    []string
	deny     string // a command prefix answered EACCES
}

type errnoErr int

func (e errnoErr) Error() string  { return fmt.Sprintf("errno %d", int(e)) }
func (e errnoErr) ErrorCode() int { return -int(e) }

func newFakeAuth() *fakeAuth { return &fakeAuth{entities: map[string]authEntry{}} }

func (f *fakeAuth) MonCommand(args []byte) ([]byte, string, error) {
	var cmd struct {
		Prefix string   `json:"prefix"`
		Entity string   `json:"entity"`
		Caps   []string `json:"caps"`
	}
	if err := json.Unmarshal(args, &cmd); err != nil {
		return nil, "bad json", errnoErr(syscall.EINVAL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, cmd.Prefix)
	if f.deny != "" && cmd.Prefix == f.deny {
		return nil, "access denied", errnoErr(syscall.EACCES)
	}
	caps := map[string]string{}
	for i := 0; i+1 < len(cmd.Caps); i += 2 {
		caps[cmd.Caps[i]] = cmd.Caps[i+1]
	}
	e, ok := f.entities[cmd.Entity]
	switch cmd.Prefix {
	case "auth get":
		if !ok {
			return nil, "failed to find " + cmd.Entity, errnoErr(syscall.ENOENT)
		}
	case "auth get-or-create":
		if ok && !sameCaps(e.Caps, caps) {
			return nil, "key for " + cmd.Entity + " exists but cap does not match", errnoErr(syscall.EINVAL)
		}
		if !ok {
			f.next++
			e = authEntry{Entity: cmd.Entity, Key: fmt.Sprintf("KEY%d", f.next), Caps: caps}
			f.entities[cmd.Entity] = e
		}
	case "auth caps":
		if !ok {
			return nil, "", errnoErr(syscall.ENOENT)
		}
		e.Caps = caps
		f.entities[cmd.Entity] = e
		return nil, "updated caps", nil
	case "auth rm":
		delete(f.entities, cmd.Entity)
		return nil, "", nil
	default:
		return nil, "unknown", errnoErr(syscall.EINVAL)
	}
	out, _ := json.Marshal([]authEntry{e})
	return out, "", nil
}

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
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAuth()
			if tc.existing != nil {
				f.entities["client.shiphold.rbd.a"] = authEntry{Entity: "client.shiphold.rbd.a", Key: "OLD", Caps: tc.existing}
			}
			cred, err := EnsureIdentity(f, rbdIdentity(tc.pool))
			if err != nil {
				t.Fatal(err)
			}
			e := f.entities["client.shiphold.rbd.a"]
			if cred.UserID != "shiphold.rbd.a" || cred.Key != e.Key || cred.Key == "" {
				t.Errorf("credentials %s key %q, entity key %q", cred, cred.Key, e.Key)
			}
			if e.Caps["osd"] != tc.wantOSD || e.Caps["mon"] != "profile rbd" || len(e.Caps) != 2 {
				t.Errorf("caps = %v, want osd %q", e.Caps, tc.wantOSD)
			}
			if strings.Join(f.calls, ",") != strings.Join(tc.wantCmds, ",") {
				t.Errorf("commands %v, want %v", f.calls, tc.wantCmds)
			}
		})
	}
}

// Requests that race to make the same tenant's identity all get the one key.
func TestEnsureIdentityConcurrent(t *testing.T) {
	f := newFakeAuth()
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
	f := newFakeAuth()
	f.deny = "auth get"
	_, err := EnsureIdentity(f, rbdIdentity("rbd"))
	if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), `allow command "auth get"`) {
		t.Fatalf("error = %v, want FailedPrecondition naming the auth caps", err)
	}
}

func TestRotateAndRemoveIdentity(t *testing.T) {
	f := newFakeAuth()
	old, err := EnsureIdentity(f, rbdIdentity("rbd"))
	if err != nil {
		t.Fatal(err)
	}
	caps := f.entities["client.shiphold.rbd.a"].Caps
	ok, err := RotateIdentity(f, "shiphold.rbd.a")
	if err != nil || !ok {
		t.Fatalf("rotate = %v, %v", ok, err)
	}
	e := f.entities["client.shiphold.rbd.a"]
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
	if _, ok := f.entities["client.shiphold.rbd.a"]; ok {
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
	cred, err := StageCredentials(config.CephCredentials{}, pc, secrets)
	if err != nil || cred.UserID != "shiphold.rbd.a" || cred.Key != "TENANTKEY" {
		t.Errorf("with a tenant identity: %s %q %v; want the tenant's, never the stage secret", cred, cred.Key, err)
	}
	cred, err = StageCredentials(config.CephCredentials{}, map[string]string{"other": "x"}, secrets)
	if err != nil || cred.UserID != "admin" {
		t.Errorf("published before identities: %s %v; want the node-stage secret", cred, err)
	}
	if _, err := StageCredentials(config.CephCredentials{}, map[string]string{PublishContextUser: "u"}, secrets); backend.CodeOf(err) != backend.InvalidArgument {
		t.Errorf("half an identity: %v, want InvalidArgument", err)
	}
}
