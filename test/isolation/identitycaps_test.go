package isolation

import (
	"maps"
	"os/exec"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/test/harness"
)

// EnsureIdentity against the real monitor (whose auth get-or-create compares only the cap
// types it is given, and answers EINVAL when one of those differs, as cephtest.Auth does):
// caps changed by hand, a cap type added, a grant widened or a type dropped, come back to
// exactly the tenant's, under the same key; caps the monitor cannot parse make no user and
// say so.
func TestEnsureIdentityOnTheMonitor(t *testing.T) {
	conn := connectAs(t, adminCred(t))
	user := "shiphold.caps." + newTenant("t")
	id := ceph.Identity{User: user, Caps: map[string]string{"mon": "profile rbd", "osd": "profile rbd pool=rbd namespace=t"}}
	t.Cleanup(func() { _ = ceph.RemoveIdentity(conn, user) })
	ensure := func(step string) ceph.Credentials {
		t.Helper()
		cred, err := ceph.EnsureIdentity(conn, id)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if caps, key := monCaps(t, user); !maps.Equal(caps, id.Caps) || key != cred.Key || cred.UserID != user {
			t.Errorf("%s: the monitor has caps %v key %q, want %v and the key handed out (%q as %s)", step, caps, key, id.Caps, cred.Key, cred.UserID)
		}
		return cred
	}
	first := ensure("new user")
	if cred := ensure("caps as they are"); cred.Key != first.Key {
		t.Errorf("caps as they are: key changed from %q to %q", first.Key, cred.Key)
	}
	for _, byHand := range []struct {
		step string
		caps []string
	}{
		{"an mds cap added by hand", []string{"mon", "profile rbd", "osd", "profile rbd pool=rbd namespace=t", "mds", "allow *"}},
		{"caps widened by hand", []string{"mon", "allow *", "osd", "allow *"}},
		{"a cap type dropped by hand", []string{"mon", "profile rbd"}},
	} {
		args := append([]string{"-c", harness.CephConf(), "auth", "caps", "client." + user}, byHand.caps...)
		if out, err := exec.Command("ceph", args...).CombinedOutput(); err != nil {
			t.Fatalf("ceph auth caps: %v %s", err, out)
		}
		if cred := ensure(byHand.step); cred.Key != first.Key {
			t.Errorf("%s: key changed from %q to %q; a tenant's staged mounts hold the first", byHand.step, first.Key, cred.Key)
		}
	}

	bad := ceph.Identity{User: user + "-bad", Caps: map[string]string{"mon": "allow bogus!!"}}
	_, err := ceph.EnsureIdentity(conn, bad)
	if backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "client."+bad.User) {
		t.Errorf("caps the monitor cannot parse: error %v, want InvalidArgument naming client.%s", err, bad.User)
	}
	identityGone(t, bad.User)
}
