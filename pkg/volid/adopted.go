package volid

import (
	"fmt"
	"strings"
)

const (
	adoptedPrefix     = "a1"
	adoptedSnapPrefix = "b1"
	// snapSuffixLen is what a snapshot ID adds to its volume's: ":" and the snapshot hash.
	snapSuffixLen = 1 + HashLen
)

// Adopted is the ID of a storage object that shiphold did not create and manages in place
// under its own name: an RBD "<namespace>/<image>", a CephFS "<group>/<subvolume>", an
// Isilon directory's path.
func Adopted(backend, tenant, location, object string) (Volume, error) {
	if object == "" {
		return Volume{}, fmt.Errorf("%w: an adopted volume needs its object's name", ErrMalformed)
	}
	v := Volume{Backend: backend, Tenant: tenant, Location: location, Object: object, Hash: Hash(object)}
	return v, v.Validate()
}

// validAdopted checks the object name, and that the ID leaves room for its snapshots'.
func (v Volume) validAdopted() error {
	if v.Hash != Hash(v.Object) {
		return fmt.Errorf("%w: volume hash %q is not the hash of object %q", ErrMalformed, v.Hash, v.Object)
	}
	if !validObject(v.Object) {
		return fmt.Errorf("%w: object %q must be characters of [A-Za-z0-9._/-] in '/'-separated parts, none empty, '.' or '..'", ErrMalformed, v.Object)
	}
	if l := len(v.String()) + snapSuffixLen; l > MaxLen {
		return fmt.Errorf("%w: object %q is too long for a volume ID (its snapshots' IDs would have %d bytes, the limit is %d)", ErrMalformed, v.Object, l, MaxLen)
	}
	return nil
}

// validObject accepts names a storage path can hold that a volume ID can carry: no ':'
// (the separator), no relative parts. A leading '/' is allowed (an absolute path, or an
// RBD image in a pool's default namespace).
func validObject(s string) bool {
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return false
			}
		}
	}
	return true
}

func parseAdopted(id string) (Volume, error) {
	parts, err := split(id, adoptedPrefix, 5)
	if err != nil {
		return Volume{}, err
	}
	if parts[4] == "" {
		return Volume{}, fmt.Errorf("%w: %q names no object", ErrMalformed, id)
	}
	v := Volume{Backend: parts[1], Tenant: parts[2], Location: parts[3], Object: parts[4], Hash: Hash(parts[4])}
	return v, v.Validate()
}

func parseAdoptedSnapshot(id string) (Snapshot, error) {
	parts, err := split(id, adoptedSnapPrefix, 6)
	if err != nil {
		return Snapshot{}, err
	}
	if parts[4] == "" {
		return Snapshot{}, fmt.Errorf("%w: %q names no object", ErrMalformed, id)
	}
	s := Snapshot{
		Volume:   Volume{Backend: parts[1], Tenant: parts[2], Location: parts[3], Object: parts[4], Hash: Hash(parts[4])},
		SnapHash: parts[5],
	}
	return s, s.Validate()
}
