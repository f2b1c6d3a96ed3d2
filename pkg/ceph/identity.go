package ceph

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/shiphold/shiphold/pkg/backend"
)

// Publish context keys that carry a tenant's cephx identity from ControllerPublishVolume to
// the node (see README, "Tenant identities"): the node mounts with it and holds no other key.
const (
	PublishContextUser = "shiphold.io/ceph-user"
	PublishContextKey  = "shiphold.io/ceph-key" // in backend.SecretPublishContextKeys
)

// Identity is the cephx user a tenant's node mounts on one backend use, with the caps that
// reach only that tenant's data.
type Identity struct {
	// User is the cephx user without "client." (IdentityUser).
	User string
	// Caps maps a daemon type (mon, osd, mds) to its cap string.
	Caps map[string]string
	// KeepOSD says which OSD grants already on the user stay beside Caps["osd"]: the same
	// tenant's grants in other pools (an RBD tenant with volumes in two pools).
	KeepOSD func(grant string) bool
}

var identityPart = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// IdentityUser names the tenant's cephx user of one backend.
func IdentityUser(backendName, tenant string) (string, error) {
	for _, p := range []string{backendName, tenant} {
		if !identityPart.MatchString(p) {
			return "", backend.Errorf(backend.InvalidArgument, "%q cannot be part of a cephx user name (letters, digits, '.', '_', '-')", p)
		}
	}
	return "shiphold." + backendName + "." + tenant, nil
}

// authEntry is one entity as `auth get` and `auth get-or-create` print it.
type authEntry struct {
	Entity string            `json:"entity"`
	Key    string            `json:"key"`
	Caps   map[string]string `json:"caps"`
}

// identityHints complete permission errors on auth commands.
var identityHints = Hints{Caps: `mon caps to manage tenant identities: allow command "auth get", "auth get-or-create", "auth caps", "auth rm" with entity prefix client.shiphold. (deploy/README.md, Ceph users)`}

func monJSON(mon MonCommander, cmd map[string]any) ([]byte, error) {
	buf, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	out, status, err := mon.MonCommand(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (%s)", cmd["prefix"], err, strings.TrimSpace(status))
	}
	return out, nil
}

func getEntity(mon MonCommander, entity string) (*authEntry, error) {
	out, err := monJSON(mon, map[string]any{"prefix": "auth get", "entity": entity, "format": "json"})
	if err != nil {
		return nil, err
	}
	var entries []authEntry
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) != 1 {
		return nil, backend.Errorf(backend.Internal, "auth get %s: unexpected answer %q", entity, out)
	}
	return &entries[0], nil
}

func capsArgs(caps map[string]string) []string {
	types := make([]string, 0, len(caps))
	for t := range caps {
		types = append(types, t)
	}
	sort.Strings(types)
	var args []string
	for _, t := range types {
		args = append(args, t, caps[t])
	}
	return args
}

// wantCaps is id's caps plus the OSD grants of have that KeepOSD keeps, in a stable order.
func (id Identity) wantCaps(have map[string]string) map[string]string {
	want := make(map[string]string, len(id.Caps))
	for t, c := range id.Caps {
		want[t] = c
	}
	if id.KeepOSD == nil {
		return want
	}
	grants := map[string]bool{}
	for _, g := range splitGrants(want["osd"]) {
		grants[g] = true
	}
	for _, g := range splitGrants(have["osd"]) {
		if id.KeepOSD(g) {
			grants[g] = true
		}
	}
	list := make([]string, 0, len(grants))
	for g := range grants {
		list = append(list, g)
	}
	sort.Strings(list)
	want["osd"] = strings.Join(list, ", ")
	return want
}

func splitGrants(s string) []string {
	var out []string
	for _, g := range strings.Split(s, ",") {
		if g = strings.Join(strings.Fields(g), " "); g != "" {
			out = append(out, g)
		}
	}
	return out
}

func sameCaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for t, c := range a {
		if b[t] != c {
			return false
		}
	}
	return true
}

// EnsureIdentity gets or creates id's user and returns its credentials. A user that exists
// with other caps (older grants, or changed by hand) gets exactly id's caps back: the caps,
// not the user's presence, are what keeps tenants apart. Safe to repeat and to race.
func EnsureIdentity(mon MonCommander, id Identity) (Credentials, error) {
	entity := "client." + id.User
	have, err := getEntity(mon, entity)
	switch {
	case Errno(err) == syscall.ENOENT:
		want := id.wantCaps(nil)
		out, err := monJSON(mon, map[string]any{"prefix": "auth get-or-create", "entity": entity, "caps": capsArgs(want), "format": "json"})
		if err != nil {
			return Credentials{}, Classify(err, "create tenant identity "+entity, identityHints)
		}
		var entries []authEntry
		if err := json.Unmarshal(out, &entries); err != nil || len(entries) != 1 || entries[0].Key == "" {
			return Credentials{}, backend.Errorf(backend.Internal, "auth get-or-create %s: unexpected answer", entity)
		}
		if !sameCaps(entries[0].Caps, want) {
			// Made by a racing request with other caps: set ours.
			return EnsureIdentity(mon, id)
		}
		return Credentials{UserID: id.User, Key: entries[0].Key}, nil
	case err != nil:
		return Credentials{}, Classify(err, "read tenant identity "+entity, identityHints)
	}
	if want := id.wantCaps(have.Caps); !sameCaps(have.Caps, want) {
		if _, err := monJSON(mon, map[string]any{"prefix": "auth caps", "entity": entity, "caps": capsArgs(want)}); err != nil {
			return Credentials{}, Classify(err, "set the caps of tenant identity "+entity, identityHints)
		}
	}
	return Credentials{UserID: id.User, Key: have.Key}, nil
}

// RemoveIdentity deletes the user; nil when it is already gone.
func RemoveIdentity(mon MonCommander, user string) error {
	_, err := monJSON(mon, map[string]any{"prefix": "auth rm", "entity": "client." + user})
	if err != nil && Errno(err) != syscall.ENOENT {
		return Classify(err, "remove tenant identity client."+user, identityHints)
	}
	return nil
}

// RotateIdentity gives the user a new key with the same caps and revokes the old one at
// once; false when the user does not exist. Mounts already made keep their sessions; a
// new mount needs the new key, which the next ControllerPublishVolume hands out.
func RotateIdentity(mon MonCommander, user string) (bool, error) {
	entity := "client." + user
	have, err := getEntity(mon, entity)
	if Errno(err) == syscall.ENOENT {
		return false, nil
	}
	if err != nil {
		return false, Classify(err, "read tenant identity "+entity, identityHints)
	}
	if err := RemoveIdentity(mon, user); err != nil {
		return false, err
	}
	if _, err := EnsureIdentity(mon, Identity{User: user, Caps: have.Caps}); err != nil {
		return false, err
	}
	return true, nil
}

// StageCredentials are the credentials a node mounts a volume with: the tenant identity
// ControllerPublishVolume put in the publish context, else (a volume published before
// tenant identities, or a CephFS volume whose data predates its tenant's namespace) the
// node-stage secret or the node's configured key, as before.
func StageCredentials(c DefaultCredentials, publishContext, secrets map[string]string) (Credentials, error) {
	user, key := publishContext[PublishContextUser], publishContext[PublishContextKey]
	switch {
	case user != "" && key != "":
		return Credentials{UserID: user, Key: key}, nil
	case user != "" || key != "":
		return Credentials{}, backend.Errorf(backend.InvalidArgument, "publish context has only one of %q and %q; unpublish and publish the volume again", PublishContextUser, PublishContextKey)
	}
	return CredentialsFor(c, secrets)
}

// PublishContext is the publish context that hands cred to the node.
func PublishContext(cred Credentials) map[string]string {
	return map[string]string{PublishContextUser: cred.UserID, PublishContextKey: cred.Key}
}
