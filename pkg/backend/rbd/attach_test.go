package rbd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

var (
	volA  = volid.Volume{Backend: "ceph", Tenant: "team-a", Location: "2", Hash: volid.Hash("pvc-a")}
	imgA  = imageSpec{Pool: "rbd", Namespace: "team-a", Image: imageName(volA.Hash)}
	imgB  = imageSpec{Pool: "rbd", Namespace: "team-b", Image: imageName(volid.Hash("pvc-b"))}
	creds = map[string]string{"userID": "u", "userKey": "SECRETKEY"}
)

func stageA(staging, strategy string) *backend.StageRequest {
	return &backend.StageRequest{ID: volA, StagingPath: staging, FsType: "ext4", Secrets: creds,
		Context: map[string]string{CtxPool: imgA.Pool, CtxNamespace: imgA.Namespace, CtxImage: imgA.Image, CtxMounter: strategy}}
}

func recordOf(strategy string, img imageSpec, boot string, extra map[string]any) map[string]any {
	r := map[string]any{"volume": volA.String(), "strategy": strategy, "fsType": "ext4", "bootId": boot,
		"image": map[string]string{"pool": img.Pool, "namespace": img.Namespace, "image": img.Image}}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

// After a restart the record's /dev/rbd0 is another tenant's image: staging must not mount
// it, format it or unmap it.
func TestStageNeverTrustsAReusedKRBDDevice(t *testing.T) {
	for _, tc := range []struct {
		name      string
		formatted bool
	}{{"their filesystem", true}, {"their empty device", false}} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFakeKernel(t)
			s := k.stager(MounterKRBD)
			staging := t.TempDir()
			stale := k.mapKRBD(0, imgB)
			if tc.formatted {
				k.formatted[stale] = "ext4"
			}
			writeRawRecord(t, staging, recordOf(MounterKRBD, imgA, testBoot, map[string]any{"device": stale}))
			n := len(k.fe.Commands())
			err := s.StageVolume(context.Background(), stageA(staging, MounterKRBD))
			cmds := k.commandsSince(n)
			for _, c := range cmds {
				if strings.Contains(c, stale) && (strings.HasPrefix(c, "mkfs") || strings.HasPrefix(c, "rbd unmap")) {
					t.Fatalf("ran %q on team-b's device: %v", c, cmds)
				}
			}
			if got, ok := k.krbdImage(0); !ok || got != imgB {
				t.Fatalf("team-b's mapping changed: %+v %v", got, ok)
			}
			dev := mountedFrom(t, k.fm, fsPath(staging))
			if dev == stale {
				t.Fatalf("team-a's staging path mounts team-b's device %s", stale)
			}
			if err != nil {
				t.Fatalf("stage: %v", err)
			}
			if len(k.krbdMappings(imgA)) != 1 {
				t.Fatalf("team-a's image mapped %v times", k.krbdMappings(imgA))
			}
		})
	}
}

// After a restart the record's loop device is backed by another volume's image file.
func TestStageNeverTrustsAReusedLoopDevice(t *testing.T) {
	k := newFakeKernel(t)
	s := k.stager(MounterFuse)
	staging, other := t.TempDir(), t.TempDir()
	// Our rbd-fuse still serves our image; the loop device number now belongs to another volume.
	fuseDir := filepath.Join(staging, fuseDirName)
	k.write(filepath.Join(fuseDir, imgA.Image), "")
	k.fm.Mount("rbd-fuse", fuseDir, "fuse.rbd-fuse", nil)
	stale := k.attachLoop(filepath.Join(other, fuseDirName, imgB.Image), false)
	k.formatted[stale] = "ext4"
	writeRawRecord(t, staging, recordOf(MounterFuse, imgA, testBoot, map[string]any{"device": stale, "fuseMount": fuseDir}))
	n := len(k.fe.Commands())
	err := s.StageVolume(context.Background(), stageA(staging, MounterFuse))
	cmds := k.commandsSince(n)
	for _, c := range cmds {
		if strings.Contains(c, stale) && (strings.HasPrefix(c, "mkfs") || strings.HasPrefix(c, "losetup --detach") || strings.HasPrefix(c, "fsck")) {
			t.Fatalf("ran %q on the other volume's loop device: %v", c, cmds)
		}
	}
	if dev := mountedFrom(t, k.fm, fsPath(staging)); dev == stale {
		t.Fatalf("staging path mounts the other volume's loop device %s", stale)
	}
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	if k.loopFile(stale) != filepath.Join(other, fuseDirName, imgB.Image) {
		t.Fatalf("the other volume lost its loop device: %v", k.loops)
	}
}

// A record from another boot names nothing that can be trusted, even when its paths exist.
func TestStageDistrustsARecordFromAnotherBoot(t *testing.T) {
	k := newFakeKernel(t)
	s := k.stager(MounterFuse)
	staging := t.TempDir()
	fuseDir := filepath.Join(staging, fuseDirName)
	k.write(filepath.Join(fuseDir, imgA.Image), "")
	k.fm.Mount("rbd-fuse", fuseDir, "fuse.rbd-fuse", nil)
	k.daemon(4001, 50, "rbd-fuse", fuseDir, "-p", "rbd", "--namespace=team-a", "-r", imgA.Image)
	stale := k.attachLoop(filepath.Join(fuseDir, imgA.Image), false)
	writeRawRecord(t, staging, recordOf(MounterFuse, imgA, "an-earlier-boot", map[string]any{"device": stale, "fuseMount": fuseDir, "fusePid": 4001}))
	n := len(k.fe.Commands())
	if err := s.StageVolume(context.Background(), stageA(staging, MounterFuse)); err != nil {
		t.Fatalf("stage: %v", err)
	}
	cmds := k.commandsSince(n)
	mapped := map[string]bool{}
	for _, c := range cmds {
		if strings.HasPrefix(c, "losetup --find") {
			mapped["x"] = true
		}
	}
	if !mapped["x"] {
		t.Fatalf("a record of another boot was reused without attaching again: %v", cmds)
	}
}

// A device this call did not map is never formatted, even when it is this image: a crash
// between map and mkfs leaves an empty device that a retry maps afresh.
func TestStageNeverFormatsADeviceItDidNotMap(t *testing.T) {
	k := newFakeKernel(t)
	s := k.stager(MounterKRBD)
	staging := t.TempDir()
	old := k.mapKRBD(0, imgA)
	writeRawRecord(t, staging, recordOf(MounterKRBD, imgA, testBoot, map[string]any{"device": old}))
	n := len(k.fe.Commands())
	if err := s.StageVolume(context.Background(), stageA(staging, MounterKRBD)); err != nil {
		t.Fatalf("stage: %v", err)
	}
	cmds := k.commandsSince(n)
	mapAt, mkfsAt := -1, -1
	for i, c := range cmds {
		if strings.HasPrefix(c, "rbd map") && mapAt < 0 {
			mapAt = i
		}
		if strings.HasPrefix(c, "mkfs") {
			mkfsAt = i
		}
	}
	if mkfsAt >= 0 && (mapAt < 0 || mapAt > mkfsAt) {
		t.Fatalf("formatted a device this stage did not map: %v", cmds)
	}
	if len(k.krbdMappings(imgA)) != 1 {
		t.Fatalf("image mapped %v", k.krbdMappings(imgA))
	}
}

// A crash inside rbd map leaves a mapping the record does not name; unstage finds it.
func TestUnstageUnmapsAMappingLeakedByACrashedMap(t *testing.T) {
	for _, strategy := range []string{MounterKRBD, MounterNBD} {
		t.Run(strategy, func(t *testing.T) {
			k := newFakeKernel(t)
			s := k.stager(strategy)
			staging := t.TempDir()
			k.mapKRBD(0, imgB) // another volume's, never touched
			k.failNextMapAfter = true
			err := s.StageVolume(context.Background(), stageA(staging, strategy))
			if err == nil {
				t.Fatal("stage with a failing map succeeded")
			}
			// The plugin died before its undo: put the record back as the crash left it.
			writeRawRecord(t, staging, recordOf(strategy, imgA, testBoot, nil))
			if err := s.UnstageVolume(context.Background(), volA, staging); err != nil {
				t.Fatalf("unstage: %v", err)
			}
			if ids := k.krbdMappings(imgA); len(ids) != 0 {
				t.Fatalf("krbd mappings of the image left: %v", ids)
			}
			for dev, img := range k.nbd {
				if img == imgA {
					t.Fatalf("rbd-nbd mapping %s of the image left", dev)
				}
			}
			if got, ok := k.krbdImage(0); !ok || got != imgB {
				t.Fatal("another volume's mapping was removed")
			}
		})
	}
}

// A crashed map followed by a new stage maps the image once, not twice.
func TestStageAfterACrashedMapLeavesOneMapping(t *testing.T) {
	k := newFakeKernel(t)
	s := k.stager(MounterKRBD)
	staging := t.TempDir()
	k.mapKRBD(3, imgA) // leaked by the crash
	writeRawRecord(t, staging, recordOf(MounterKRBD, imgA, testBoot, nil))
	if err := s.StageVolume(context.Background(), stageA(staging, MounterKRBD)); err != nil {
		t.Fatalf("stage: %v", err)
	}
	if ids := k.krbdMappings(imgA); len(ids) != 1 {
		t.Fatalf("image mapped at %v after the retry, want once", ids)
	}
}

// sleeper starts a process this test owns; the rbd-fuse teardown must never signal it.
// The returned channel closes when it has exited and been reaped.
func sleeper(t *testing.T) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd, done
}

func alivePID(pid int) bool {
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return syscall.Kill(pid, 0) == nil && st[i+2] != 'Z'
}

// The PID in a record may name another process by the time of teardown.
func TestFuseTeardownNeverSignalsAReusedPID(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv func(fuseDir string) []string
	}{
		{"now an unrelated process", func(string) []string { return []string{"sleep", "300"} }},
		{"now another volume's rbd-fuse", func(string) []string {
			return []string{"rbd-fuse", "/var/lib/kubelet/other/rbd-fuse", "-p", "rbd", "-r", imgB.Image}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFakeKernel(t)
			s := k.stager(MounterFuse)
			staging := t.TempDir()
			fuseDir := filepath.Join(staging, fuseDirName)
			k.write(filepath.Join(fuseDir, imgA.Image), "")
			k.fm.Mount("rbd-fuse", fuseDir, "fuse.rbd-fuse", nil)
			victim, _ := sleeper(t)
			// The fake /proc shows the victim's PID as tc says; its start time is not the recorded one.
			k.daemon(victim.Process.Pid, 123456, tc.argv(fuseDir)...)
			// Unmounting does not end the victim (it is not this mount's daemon).
			k.fm.UnmountFunc = func(string) error { return nil }
			writeRawRecord(t, staging, recordOf(MounterFuse, imgA, testBoot, map[string]any{"fuseMount": fuseDir, "fusePid": victim.Process.Pid, "fuseStart": 99}))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s.UnstageVolume(ctx, volA, staging)
			if !alivePID(victim.Process.Pid) {
				t.Fatalf("teardown killed pid %d, which the record named but which was no longer its rbd-fuse", victim.Process.Pid)
			}
		})
	}
}

// The daemon a record names is still stopped when it outstays its unmount and is still itself.
func TestFuseTeardownStopsItsOwnDaemon(t *testing.T) {
	k := newFakeKernel(t)
	s := k.stager(MounterFuse)
	staging := t.TempDir()
	fuseDir := filepath.Join(staging, fuseDirName)
	k.write(filepath.Join(fuseDir, imgA.Image), "")
	k.fm.Mount("rbd-fuse", fuseDir, "fuse.rbd-fuse", nil)
	stuck, exited := sleeper(t)
	k.daemon(stuck.Process.Pid, 99, "rbd-fuse", fuseDir, "-p", "rbd", "--namespace=team-a", "-r", imgA.Image)
	// It does not exit on unmount.
	k.fm.UnmountFunc = func(path string) error {
		entries, _ := os.ReadDir(path)
		for _, e := range entries {
			os.Remove(filepath.Join(path, e.Name()))
		}
		return nil
	}
	writeRawRecord(t, staging, recordOf(MounterFuse, imgA, testBoot, map[string]any{"fuseMount": fuseDir, "fusePid": stuck.Process.Pid, "fuseStart": 99}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		// The fake /proc follows the real process once it is killed.
		<-exited
		os.RemoveAll(filepath.Join(k.proc, strconv.Itoa(stuck.Process.Pid)))
	}()
	if err := s.UnstageVolume(ctx, volA, staging); err != nil {
		t.Fatalf("unstage: %v", err)
	}
	if alivePID(stuck.Process.Pid) {
		t.Fatalf("rbd-fuse (pid %d) of this mount outstayed its unmount and was left running", stuck.Process.Pid)
	}
}

// A crash between writing a key file and removing it must not leave the key on the node:
// repair (at plugin start) and unstage sweep it.
func TestStrayKeyFilesAreSwept(t *testing.T) {
	for _, strategy := range []string{MounterKRBD, MounterFuse} {
		k := newFakeKernel(t)
		s := k.stager(strategy)
		staging := t.TempDir()
		stray := filepath.Join(staging, ".shiphold-key-1234")
		put := func() {
			if err := os.WriteFile(stray, []byte("SECRETKEY"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// The plugin died inside the map: a record without a device, and its key file.
		writeRawRecord(t, staging, recordOf(strategy, imgA, testBoot, nil))
		put()
		if err := s.Repair(context.Background(), volA, staging, nil); err != nil {
			t.Fatalf("%s repair: %v", strategy, err)
		}
		if _, err := os.Stat(stray); !os.IsNotExist(err) {
			t.Fatalf("%s: repair left the key file (%v)", strategy, err)
		}
		writeRawRecord(t, staging, recordOf(strategy, imgA, testBoot, nil))
		put()
		if err := s.UnstageVolume(context.Background(), volA, staging); err != nil {
			t.Fatalf("%s unstage: %v", strategy, err)
		}
		if _, err := os.Stat(stray); !os.IsNotExist(err) {
			t.Fatalf("%s: unstage left the key file (%v)", strategy, err)
		}
	}
}
