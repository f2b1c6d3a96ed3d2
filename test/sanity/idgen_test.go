package sanity

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/shiphold/shiphold/pkg/volid"
)

// missingIDs hands csi-sanity volume IDs that parse as shiphold IDs of the backend under
// test (its name, a real tenant, the location a real volume reported) and name no object,
// so the "does not exist" specs reach the backend's lookup instead of stopping in the ID
// parser.
type missingIDs struct {
	// like is the ID of a volume the backend created; only its hash is replaced.
	like volid.Volume
}

var _ sanity.IDGenerator = missingIDs{}

func randomHash() string {
	b := make([]byte, volid.HashLen/2)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (Go 1.24+)
	return hex.EncodeToString(b)
}

// volume is an ID in the template's tenant and location whose object does not exist.
func (g missingIDs) volume() volid.Volume {
	v := g.like
	v.Hash = randomHash()
	return v
}

// inAbsentTenant is an ID whose tenant has no place on the storage at all (no RADOS
// namespace, subvolume group or directory).
func (g missingIDs) inAbsentTenant() volid.Volume {
	v := g.volume()
	v.Tenant = "absent-" + randomHash()
	return v
}

// atAbsentLocation names a pool or filesystem ID that does not exist; backends without a
// location (isilon) return the plain missing volume.
func (g missingIDs) atAbsentLocation() volid.Volume {
	v := g.volume()
	if v.Location != "" {
		v.Location = "9999999"
	}
	return v
}

// snapshotOf is a snapshot ID of vol whose snapshot does not exist.
func (g missingIDs) snapshotOf(vol volid.Volume) volid.Snapshot {
	return volid.Snapshot{Volume: vol, SnapHash: randomHash()}
}

func (g missingIDs) GenerateUniqueValidVolumeID() string { return g.volume().String() }

// GenerateInvalidVolumeID is not a shiphold ID at all: DeleteVolume must succeed on it.
func (g missingIDs) GenerateInvalidVolumeID() string { return "not-a-shiphold-volume-id" }

// Node IDs stay in a form the driver rejects (no name@address): the controller has no
// registry of nodes, so a well-formed node ID that names no node cannot be told apart
// from a real one (see SKIPS.md).
func (g missingIDs) GenerateUniqueValidNodeID() string {
	return fmt.Sprintf("sanity-node-%s", randomHash())
}

func (g missingIDs) GenerateInvalidNodeID() string { return "sanity-node" }

// TestMissingIDsParse: every generated ID is a shiphold ID of the template's backend, so the
// driver takes it to the backend, and no two are alike.
func TestMissingIDsParse(t *testing.T) {
	g := missingIDs{like: volid.Volume{Backend: "sanity-rbd", Tenant: "default", Location: "2", Hash: volid.Hash("x")}}
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		for _, id := range []string{g.GenerateUniqueValidVolumeID(), g.inAbsentTenant().String(), g.atAbsentLocation().String(), g.snapshotOf(g.volume()).String()} {
			if seen[id] {
				t.Fatalf("%s generated twice", id)
			}
			seen[id] = true
		}
		v, err := volid.ParseVolume(g.GenerateUniqueValidVolumeID())
		if err != nil || v.Backend != "sanity-rbd" || v.Tenant != "default" || v.Location != "2" || v.Hash == g.like.Hash {
			t.Fatalf("volume ID %+v %v", v, err)
		}
		if v, err := volid.ParseVolume(g.inAbsentTenant().String()); err != nil || v.Tenant == "default" {
			t.Fatalf("absent tenant %+v %v", v, err)
		}
		if v, err := volid.ParseVolume(g.atAbsentLocation().String()); err != nil || v.Location == "2" {
			t.Fatalf("absent location %+v %v", v, err)
		}
		if _, err := volid.ParseSnapshot(g.snapshotOf(g.volume()).String()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := volid.ParseVolume(g.GenerateInvalidVolumeID()); err == nil {
		t.Fatal("the invalid volume ID parses")
	}
}
