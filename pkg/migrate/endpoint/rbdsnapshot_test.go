package endpoint

import (
	"context"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// blockVolumes is an RBD controller with snapshots and volumes in memory, logging calls.
type blockVolumes struct {
	snapshots
	vols []*backend.Volume
}

func (c *blockVolumes) CreateVolume(_ context.Context, r *backend.VolumeRequest) (*backend.Volume, error) {
	if r.SourceSnapshot == nil || c.snaps[*r.SourceSnapshot] == "" {
		c.log = append(c.log, "clone of a missing snapshot")
		return nil, backend.Errorf(backend.NotFound, "no such snapshot")
	}
	c.log = append(c.log, "clone "+r.Name)
	v := &backend.Volume{ID: r.ID("rbd", "1"), RequestName: r.Name, CapacityBytes: r.RequiredBytes}
	c.vols = append(c.vols, v)
	return v, nil
}

func (c *blockVolumes) ListVolumes(_ context.Context, tenant string) ([]*backend.Volume, error) {
	return c.vols, nil
}

func (c *blockVolumes) DeleteVolume(_ context.Context, id volid.Volume, _ map[string]string) error {
	for i, v := range c.vols {
		if v.ID == id {
			c.log = append(c.log, "delete volume "+v.RequestName)
			c.vols = append(c.vols[:i], c.vols[i+1:]...)
		}
	}
	return nil
}

// stager stages every volume as one directory and logs what it staged.
type stager struct {
	backend.Stager
	dir string
	log *[]string
	ro  []bool
}

func (s *stager) StageVolume(_ context.Context, r *backend.StageRequest) error {
	*s.log = append(*s.log, "stage "+r.ID.Hash)
	s.ro = append(s.ro, len(r.MountFlags) > 0 && r.MountFlags[0] == "ro")
	return nil
}

func (s *stager) PublishSource(context.Context, volid.Volume, string) (string, bool, error) {
	return s.dir, false, nil
}

func (s *stager) UnstageVolume(_ context.Context, id volid.Volume, _ string) error {
	*s.log = append(*s.log, "unstage "+id.Hash)
	return nil
}

func rbdEnv(t *testing.T) (*Env, *blockVolumes, *stager) {
	c := &blockVolumes{snapshots: snapshots{snaps: map[volid.Snapshot]string{}}}
	st := &stager{dir: t.TempDir(), log: &c.log}
	return &Env{Session: "shiphold-migrate-abc", Snapshot: true, WorkDir: t.TempDir(),
		Stagers: map[string]backend.Stager{"rbd": st}}, c, st
}

var blockVol = &backend.Volume{ID: volid.Volume{Backend: "rbd", Tenant: "shop", Hash: "00000000000000aa"}, CapacityBytes: 1 << 30}

func TestRBDSourceReadsACloneOfItsSnapshot(t *testing.T) {
	e, c, st := rbdEnv(t)
	s, err := e.openRBDSource(context.Background(), c, blockVol, Source)
	if err != nil {
		t.Fatal(err)
	}
	name := e.SnapshotName(blockVol.ID)
	if s.Snapshot != name || s.FS == nil || len(c.vols) != 1 || c.vols[0].RequestName != name {
		t.Fatalf("side %+v, volumes %v", s, c.vols)
	}
	clone := c.vols[0].ID.Hash
	if len(st.ro) != 1 || st.ro[0] {
		t.Fatalf("stagings read-only %v: want the clone staged once, read-write (journal replay)", st.ro)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := "create " + name + ", clone " + name + ", stage " + clone + ", unstage " + clone + ", delete volume " + name + ", delete " + name
	if got := strings.Join(c.log, ", "); got != want {
		t.Fatalf("calls:\n %s\nwant\n %s", got, want)
	}
	if len(c.vols) != 0 || len(c.snaps) != 0 {
		t.Fatalf("left volumes %v snapshots %v", c.vols, c.snaps)
	}
}

// A killed run leaves the clone and the snapshot; the next run, bulk or final, removes the
// clone before the snapshot it was made from.
func TestRBDLeftoverCloneAndSnapshotRemoved(t *testing.T) {
	for _, bulk := range []bool{true, false} {
		e, c, _ := rbdEnv(t)
		if _, err := e.openRBDSource(context.Background(), c, blockVol, Source); err != nil {
			t.Fatal(err)
		}
		c.log = nil // killed: nothing closed
		e.Snapshot = bulk
		s, err := e.openRBDSource(context.Background(), c, blockVol, Source)
		if err != nil {
			t.Fatal(err)
		}
		name := e.SnapshotName(blockVol.ID)
		if got := strings.Join(c.log[:2], ", "); got != "delete volume "+name+", delete "+name {
			t.Fatalf("bulk %v: the rerun began with %s", bulk, got)
		}
		s.Close()
		if len(c.vols) != 0 || len(c.snaps) != 0 {
			t.Fatalf("bulk %v: left volumes %v snapshots %v", bulk, c.vols, c.snaps)
		}
	}
}

// A dry run neither takes a snapshot nor removes a killed run's.
func TestDryRunLeavesSnapshotsAlone(t *testing.T) {
	e, c, _ := rbdEnv(t)
	if _, err := e.openRBDSource(context.Background(), c, blockVol, Source); err != nil {
		t.Fatal(err)
	}
	c.log = nil
	e.Snapshot, e.DryRun = false, true
	s, err := e.openRBDSource(context.Background(), c, blockVol, Source)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if len(c.vols) != 1 || len(c.snaps) != 1 {
		t.Fatalf("a dry run removed the killed run's clone or snapshot: %v (%v %v)", c.log, c.vols, c.snaps)
	}
}
