// Package volid encodes and decodes shiphold's self-describing volume and snapshot IDs.
//
// A volume ID names everything Delete/Stage/Expand need without a lookup table:
//
//	v1:<backend>:<tenant>:<location>:<volume>
//	s1:<backend>:<tenant>:<location>:<volume>:<snapshot>
//
// backend and tenant are DNS-label-like names, location is a short backend-specific
// token (an RBD pool ID, a CephFS filesystem ID, the access zone key for Isilon: empty for
// the backend's default zone), volume and snapshot are the 16-hex-digit hashes of the CSI
// request names. The version prefix lets the format change while old volumes keep working.
//
// A volume adopted in place (shipholdctl import) keeps its storage object's own name, which
// its ID carries instead of a hash (adopted.go):
//
//	a1:<backend>:<tenant>:<location>:<object>
//	b1:<backend>:<tenant>:<location>:<object>:<snapshot>
package volid

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

const (
	// MaxLen is the CSI limit on ID length that COs are required to accept.
	MaxLen = 128
	// MaxBackendLen bounds backend names so that every ID fits MaxLen.
	MaxBackendLen = 16
	// MaxTenantLen is a Kubernetes namespace's maximum length.
	MaxTenantLen = 63
	// MaxLocationLen bounds the backend-specific location token.
	MaxLocationLen = 8
	// HashLen is the length of an object hash in hex digits.
	HashLen = 16

	volumePrefix   = "v1"
	snapshotPrefix = "s1"
	sep            = ":"
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed ID")

// Volume identifies one volume on one backend.
type Volume struct {
	Backend  string
	Tenant   string
	Location string
	Hash     string
	// Object is an adopted volume's own storage name ("" for volumes shiphold created);
	// Hash is then the hash of Object, for keys that need a fixed length.
	Object string
}

// Snapshot identifies one snapshot of a volume.
type Snapshot struct {
	Volume
	SnapHash string
}

// Hash returns the object hash for a CSI request name.
func Hash(requestName string) string {
	sum := sha256.Sum256([]byte(requestName))
	return hex.EncodeToString(sum[:])[:HashLen]
}

// String encodes the volume ID. Call Validate first; String does not check.
func (v Volume) String() string {
	if v.Object != "" {
		return strings.Join([]string{adoptedPrefix, v.Backend, v.Tenant, v.Location, v.Object}, sep)
	}
	return strings.Join([]string{volumePrefix, v.Backend, v.Tenant, v.Location, v.Hash}, sep)
}

// String encodes the snapshot ID.
func (s Snapshot) String() string {
	if s.Object != "" {
		return strings.Join([]string{adoptedSnapPrefix, s.Backend, s.Tenant, s.Location, s.Object, s.SnapHash}, sep)
	}
	return strings.Join([]string{snapshotPrefix, s.Backend, s.Tenant, s.Location, s.Hash, s.SnapHash}, sep)
}

// Validate checks every field so that String produces a parseable ID.
func (v Volume) Validate() error {
	if err := validName("backend", v.Backend, MaxBackendLen); err != nil {
		return err
	}
	if err := validName("tenant", v.Tenant, MaxTenantLen); err != nil {
		return err
	}
	if len(v.Location) > MaxLocationLen || !isToken(v.Location, true) {
		return fmt.Errorf("%w: location %q must be at most %d characters of [a-z0-9-]", ErrMalformed, v.Location, MaxLocationLen)
	}
	if v.Object != "" {
		return v.validAdopted()
	}
	return validHash("volume hash", v.Hash)
}

// Validate checks the snapshot ID fields.
func (s Snapshot) Validate() error {
	if err := s.Volume.Validate(); err != nil {
		return err
	}
	return validHash("snapshot hash", s.SnapHash)
}

// ParseVolume decodes a volume ID.
func ParseVolume(id string) (Volume, error) {
	if strings.HasPrefix(id, adoptedPrefix+sep) {
		return parseAdopted(id)
	}
	parts, err := split(id, volumePrefix, 5)
	if err != nil {
		return Volume{}, err
	}
	v := Volume{Backend: parts[1], Tenant: parts[2], Location: parts[3], Hash: parts[4]}
	return v, v.Validate()
}

// ParseSnapshot decodes a snapshot ID.
func ParseSnapshot(id string) (Snapshot, error) {
	if strings.HasPrefix(id, adoptedSnapPrefix+sep) {
		return parseAdoptedSnapshot(id)
	}
	parts, err := split(id, snapshotPrefix, 6)
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{
		Volume:   Volume{Backend: parts[1], Tenant: parts[2], Location: parts[3], Hash: parts[4]},
		SnapHash: parts[5],
	}
	return s, s.Validate()
}

func split(id, prefix string, n int) ([]string, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(id) > MaxLen {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMalformed, len(id), MaxLen)
	}
	parts := strings.Split(id, sep)
	if parts[0] != prefix {
		return nil, fmt.Errorf("%w: %q does not start with %q", ErrMalformed, id, prefix+sep)
	}
	if len(parts) != n {
		return nil, fmt.Errorf("%w: %q has %d fields, want %d", ErrMalformed, id, len(parts), n)
	}
	return parts, nil
}

func validName(what, s string, max int) error {
	if s == "" || len(s) > max || !isToken(s, false) || s[0] == '-' || s[len(s)-1] == '-' {
		return fmt.Errorf("%w: %s %q must be 1-%d characters of [a-z0-9-], not starting or ending with '-'", ErrMalformed, what, s, max)
	}
	return nil
}

func validHash(what, s string) error {
	if len(s) != HashLen {
		return fmt.Errorf("%w: %s %q must be %d hex digits", ErrMalformed, what, s, HashLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: %s %q must be %d hex digits", ErrMalformed, what, s, HashLen)
		}
	}
	return nil
}

func isToken(s string, allowEmpty bool) bool {
	if s == "" {
		return allowEmpty
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidTenant reports whether name can be used as a tenant.
func ValidTenant(name string) error { return validName("tenant", name, MaxTenantLen) }

// ValidBackend reports whether name can be used as a backend name.
func ValidBackend(name string) error { return validName("backend", name, MaxBackendLen) }
