package rbd

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

var rox = backend.AccessMode{MultiNode: true, ReaderOnly: true}

func stageWith(staging, strategy, fsType string, access backend.AccessMode, publishedRO bool) *backend.StageRequest {
	req := stageA(staging, strategy)
	req.FsType, req.Access, req.ReadOnly = fsType, access, publishedRO
	return req
}

// mapCommand is the command of cmds that mapped the image (rbd/rbd-nbd map, or losetup).
func mapCommand(t *testing.T, strategy string, cmds []string) string {
	t.Helper()
	prefix := map[string]string{MounterKRBD: "rbd map", MounterNBD: "rbd-nbd map", MounterFuse: "losetup --find"}[strategy]
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			return c
		}
	}
	t.Fatalf("no %q in %v", prefix, cmds)
	return ""
}

// Reader-only modes and read-only publishes map read-only and mount ro without replaying a
// journal, on every strategy; nothing is formatted or checked for repair.
func TestReaderOnlyStagesAreReadOnlyAllTheWayDown(t *testing.T) {
	for _, strategy := range []string{MounterKRBD, MounterNBD, MounterFuse} {
		for _, fs := range []string{"ext4", "xfs"} {
			for _, tc := range []struct {
				name        string
				access      backend.AccessMode
				publishedRO bool
			}{{"ROX", rox, false}, {"ROO", backend.AccessMode{ReaderOnly: true}, false}, {"RWO published read-only", backend.AccessMode{}, true}} {
				t.Run(strategy+"/"+fs+"/"+tc.name, func(t *testing.T) {
					k := newFakeKernel(t)
					s := k.stager(strategy)
					staging := t.TempDir()
					ctx := context.Background()
					// Populated once read-write.
					if err := s.StageVolume(ctx, stageWith(staging, strategy, fs, backend.AccessMode{}, false)); err != nil {
						t.Fatal(err)
					}
					if err := s.UnstageVolume(ctx, volA, staging); err != nil {
						t.Fatal(err)
					}
					n := len(k.fe.Commands())
					if err := s.StageVolume(ctx, stageWith(staging, strategy, fs, tc.access, tc.publishedRO)); err != nil {
						t.Fatalf("read-only stage: %v", err)
					}
					cmds := k.commandsSince(n)
					if m := mapCommand(t, strategy, cmds); !strings.Contains(m, "--read-only") || strings.Contains(m, "exclusive") {
						t.Fatalf("mapped with %q, want --read-only and no exclusive lock", m)
					}
					for _, c := range cmds {
						if strings.HasPrefix(c, "mkfs") || strings.HasPrefix(c, "fsck") || strings.HasPrefix(c, "xfs_repair") {
							t.Fatalf("read-only stage ran %q", c)
						}
					}
					want := map[string]string{"ext4": "noload", "xfs": "norecovery"}[fs]
					opts := mountOpts(t, k, fsPath(staging))
					if !slices.Contains(opts, "ro") || !slices.Contains(opts, want) {
						t.Fatalf("mounted with %v, want ro and %s", opts, want)
					}
					// Staged again as it is: nothing new runs.
					n = len(k.fe.Commands())
					if err := s.StageVolume(ctx, stageWith(staging, strategy, fs, tc.access, tc.publishedRO)); err != nil {
						t.Fatalf("second read-only stage: %v", err)
					}
					for _, c := range k.commandsSince(n) {
						if !strings.HasPrefix(c, "rbd-nbd list-mapped") && !strings.HasPrefix(c, "losetup --list") {
							t.Fatalf("second read-only stage ran %q", c)
						}
					}
					// A device made writable behind the plugin's back is not reused as read-only.
					dev := k.fm.MountPoints[len(k.fm.MountPoints)-1].Device
					k.write(filepath.Join(k.sys, "block", filepath.Base(dev), "ro"), "0\n")
					n = len(k.fe.Commands())
					if err := s.StageVolume(ctx, stageWith(staging, strategy, fs, tc.access, tc.publishedRO)); err != nil {
						t.Fatalf("stage over a writable device: %v", err)
					}
					if m := mapCommand(t, strategy, k.commandsSince(n)); !strings.Contains(m, "--read-only") {
						t.Fatalf("mapped again with %q", m)
					}
					if err := s.StageVolume(ctx, stageWith(staging, strategy, fs, backend.AccessMode{}, false)); backend.CodeOf(err) != backend.FailedPrecondition {
						t.Fatalf("read-write stage over the read-only one: %v", err)
					}
				})
			}
		}
	}
}

func mountOpts(t *testing.T, k *fakeKernel, path string) []string {
	t.Helper()
	mps, _ := k.fm.List()
	for _, mp := range mps {
		if mp.Path == path {
			return mp.Opts
		}
	}
	t.Fatalf("nothing mounted at %s: %+v", path, mps)
	return nil
}

// A reader-only stage of a volume without a filesystem cannot make one: it says so and
// leaves nothing attached.
func TestReaderOnlyStageOfAnEmptyVolumeIsRefused(t *testing.T) {
	for _, strategy := range []string{MounterKRBD, MounterNBD, MounterFuse} {
		t.Run(strategy, func(t *testing.T) {
			k := newFakeKernel(t)
			s := k.stager(strategy)
			staging := t.TempDir()
			err := s.StageVolume(context.Background(), stageWith(staging, strategy, "ext4", rox, false))
			if backend.CodeOf(err) != backend.FailedPrecondition || !strings.Contains(err.Error(), "populate it first") {
				t.Fatalf("ROX stage of an empty volume: %v, want FAILED_PRECONDITION saying to populate it", err)
			}
			for _, c := range k.fe.Commands() {
				if strings.HasPrefix(c, "mkfs") {
					t.Fatalf("ran %q", c)
				}
			}
			if len(k.krbdMappings(imgA)) != 0 || len(k.nbd) != 0 || len(k.loops) != 0 {
				t.Fatalf("left attached: krbd %v nbd %v loops %v", k.krbdMappings(imgA), k.nbd, k.loops)
			}
		})
	}
}

// Single-writer modes map with the image's exclusive lock where the strategy has one.
func TestSingleWriterModesMapExclusively(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		access   backend.AccessMode
		block    bool
		want     string // in the map command; "" for none
	}{
		{MounterKRBD, backend.AccessMode{}, false, "-o exclusive"},
		{MounterNBD, backend.AccessMode{}, false, "--exclusive"},
		{MounterKRBD, backend.AccessMode{MultiNode: true}, true, ""},
		{MounterNBD, backend.AccessMode{MultiNode: true}, true, ""},
		{MounterFuse, backend.AccessMode{}, false, ""}, // rbd-fuse has no exclusive lock
	} {
		k := newFakeKernel(t)
		s := k.stager(tc.strategy)
		req := stageWith(t.TempDir(), tc.strategy, "ext4", tc.access, false)
		req.Block = tc.block
		if err := s.StageVolume(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		m := mapCommand(t, tc.strategy, k.fe.Commands())
		if tc.want != "" && !strings.Contains(m, tc.want) || tc.want == "" && strings.Contains(m, "exclusive") {
			t.Fatalf("%s %+v: mapped with %q, want %q", tc.strategy, tc.access, m, tc.want)
		}
	}
}
