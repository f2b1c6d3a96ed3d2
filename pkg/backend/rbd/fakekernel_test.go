package rbd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/mounter"
)

// testBoot is the boot id the fake kernel reports.
const testBoot = "6f1c2a8e-1d1e-4c5b-9d7e-000000000001"

// fakeKernel is the node state the rbd stager reads and changes, kept in temp dirs: /sys
// (krbd devices, loop back-files), /proc (boot id, mount daemons), device nodes, and the
// rbd, rbd-nbd, rbd-fuse, losetup, blkid and mkfs commands that change them.
type fakeKernel struct {
	t                *testing.T
	sys, proc, dev   string
	fm               *mount.FakeMounter
	fe               *mounter.FakeExec
	m                *mounter.Mounter
	mu               sync.Mutex
	nbd              map[string]imageSpec // device -> image
	loops            map[string]string    // device -> back-file
	formatted        map[string]string    // device -> filesystem
	nextPID          int
	fuseStart        uint64
	failNextMapAfter bool // the next map maps, then reports failure (a crashed rbd map)
}

func newFakeKernel(t *testing.T) *fakeKernel {
	t.Helper()
	k := &fakeKernel{t: t, sys: t.TempDir(), proc: t.TempDir(), dev: t.TempDir(),
		nbd: map[string]imageSpec{}, loops: map[string]string{}, formatted: map[string]string{}, nextPID: 4100, fuseStart: 9000}
	k.write(filepath.Join(k.proc, "sys/kernel/random/boot_id"), testBoot+"\n")
	k.m, k.fm, k.fe = mounter.NewFake()
	// Unmounting a fake rbd-fuse takes its image file away and ends its daemon, as the real one does.
	k.fm.UnmountFunc = func(path string) error {
		if filepath.Base(path) == fuseDirName {
			entries, _ := os.ReadDir(path)
			for _, e := range entries {
				os.Remove(filepath.Join(path, e.Name()))
			}
			k.endDaemonsOf(path)
		}
		return nil
	}
	k.fe.Handler = k.run
	return k
}

// stager is a Stager of strategy mounterName on this kernel.
func (k *fakeKernel) stager(mounterName string) *Stager {
	k.t.Helper()
	s, err := newStager(testBackend(mounterName), k.m, k.proc, k.sys)
	if err != nil {
		k.t.Fatal(err)
	}
	if fa, ok := s.attachers[MounterFuse].(*fuseAttacher); ok {
		fa.sizeWait, fa.exitWait = 0, 300*time.Millisecond
	}
	return s
}

func (k *fakeKernel) write(path, data string) {
	k.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		k.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		k.t.Fatal(err)
	}
}

// mapKRBD shows img as krbd device id in sysfs and returns its device node, made below
// k.dev so that a check of the path alone would trust it. Devices the fake commands hand
// out are named /dev/<name>; both name the same device by base name, as sysfs does.
func (k *fakeKernel) mapKRBD(id int, img imageSpec) string {
	d := filepath.Join(k.sys, "bus/rbd/devices", strconv.Itoa(id))
	k.write(filepath.Join(d, "pool"), img.Pool+"\n")
	k.write(filepath.Join(d, "pool_ns"), img.Namespace+"\n")
	k.write(filepath.Join(d, "name"), img.Image+"\n")
	k.write(filepath.Join(d, "current_snap"), "-\n")
	dev := filepath.Join(k.dev, fmt.Sprintf("rbd%d", id))
	k.write(dev, "")
	return dev
}

// krbdImage is what sysfs says device id maps, ok false when it maps nothing.
func (k *fakeKernel) krbdImage(id int) (imageSpec, bool) {
	d := filepath.Join(k.sys, "bus/rbd/devices", strconv.Itoa(id))
	read := func(n string) string { b, _ := os.ReadFile(filepath.Join(d, n)); return strings.TrimSpace(string(b)) }
	if _, err := os.Stat(d); err != nil {
		return imageSpec{}, false
	}
	return imageSpec{Pool: read("pool"), Namespace: read("pool_ns"), Image: read("name")}, true
}

// krbdMappings counts the krbd devices of img.
func (k *fakeKernel) krbdMappings(img imageSpec) []int {
	var ids []int
	for id := 0; id < 16; id++ {
		if got, ok := k.krbdImage(id); ok && got == img {
			ids = append(ids, id)
		}
	}
	return ids
}

// attachLoop puts a loop device on file, as losetup --find does, shows it in sysfs and
// returns its node below k.dev (see mapKRBD).
func (k *fakeKernel) attachLoop(file string, readOnly bool) string {
	for n := 0; ; n++ {
		name := fmt.Sprintf("loop%d", n)
		if _, busy := k.loops[name]; busy {
			continue
		}
		k.loops[name] = file
		ro := "0\n"
		if readOnly {
			ro = "1\n"
		}
		k.write(filepath.Join(k.sys, "block", name, "loop/backing_file"), file+"\n")
		k.write(filepath.Join(k.sys, "block", name, "ro"), ro)
		dev := filepath.Join(k.dev, name)
		k.write(dev, "")
		return dev
	}
}

func (k *fakeKernel) detachLoop(dev string) {
	delete(k.loops, filepath.Base(dev))
	os.RemoveAll(filepath.Join(k.sys, "block", filepath.Base(dev), "loop"))
}

// loopFile is the back-file of a loop device, "" when it is detached.
func (k *fakeKernel) loopFile(dev string) string { return k.loops[filepath.Base(dev)] }

// daemon adds a process to the fake /proc: stat (state, start time) and command line.
func (k *fakeKernel) daemon(pid int, start uint64, argv ...string) {
	stat := fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0", pid, filepath.Base(argv[0]), pid, pid, start)
	k.write(filepath.Join(k.proc, strconv.Itoa(pid), "stat"), stat)
	k.write(filepath.Join(k.proc, strconv.Itoa(pid), "cmdline"), strings.Join(argv, "\x00")+"\x00")
}

func (k *fakeKernel) endDaemonsOf(mountpoint string) {
	entries, _ := os.ReadDir(k.proc)
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join(k.proc, e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), "\x00"+mountpoint+"\x00") && strings.HasPrefix(string(cmd), "rbd-fuse\x00") {
			os.RemoveAll(filepath.Join(k.proc, e.Name()))
		}
	}
}

// commandsSince returns the command lines run after the first n.
func (k *fakeKernel) commandsSince(n int) []string { return k.fe.Commands()[n:] }

func specOf(arg string) imageSpec {
	p := strings.SplitN(arg, "/", 3)
	if len(p) == 2 {
		return imageSpec{Pool: p[0], Image: p[1]}
	}
	return imageSpec{Pool: p[0], Namespace: p[1], Image: p[2]}
}

func (k *fakeKernel) run(name string, args ...string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch name {
	case "modprobe":
		return []byte("modprobe: FATAL: Module not found"), fmt.Errorf("exit status 1")
	case "rbd", "rbd-nbd":
		return k.runMapper(name, args)
	case "rbd-fuse":
		dir := args[0]
		img := imageSpec{Pool: argAfter(args, "-p"), Namespace: argAfter(args, "--namespace"), Image: argAfter(args, "-r")}
		k.write(filepath.Join(dir, img.Image), strings.Repeat("\x00", 1024))
		k.nextPID++
		k.fuseStart++
		k.daemon(k.nextPID, k.fuseStart, append([]string{"rbd-fuse"}, args...)...)
		return nil, k.fm.Mount("rbd-fuse", dir, "fuse.rbd-fuse", nil)
	case "losetup":
		return k.runLosetup(args)
	case "blkid":
		if fs := k.formatted[args[len(args)-1]]; fs != "" {
			return []byte("TYPE=" + fs + "\n"), nil
		}
		return nil, nil
	case "mkfs.ext4", "mkfs.xfs":
		k.formatted[args[len(args)-1]] = strings.TrimPrefix(name, "mkfs.")
		return nil, nil
	case "dumpe2fs": // a filesystem that fills the 1 MiB device, if there is one
		if k.formatted[args[len(args)-1]] == "" {
			return []byte("dumpe2fs: Bad magic number in super-block"), errors.New("exit status 19")
		}
		return []byte("Block count:              256\nBlock size:               4096\n"), nil
	case "blockdev":
		if args[0] == "--getro" {
			return []byte("0\n"), nil
		}
		return []byte("1048576\n"), nil
	}
	return nil, nil
}

func (k *fakeKernel) runMapper(tool string, args []string) ([]byte, error) {
	switch args[0] {
	case "map":
		img := specOf(args[1])
		ro := "0\n"
		for _, a := range args {
			if a == "--read-only" {
				ro = "1\n"
			}
		}
		var dev string
		defer func() { k.write(filepath.Join(k.sys, "block", filepath.Base(dev), "ro"), ro) }()
		if tool == "rbd" {
			id := 0
			for ; ; id++ {
				if _, taken := k.krbdImage(id); !taken {
					break
				}
			}
			k.mapKRBD(id, img)
			dev = fmt.Sprintf("/dev/rbd%d", id)
		} else {
			for n := 0; ; n++ {
				dev = fmt.Sprintf("/dev/nbd%d", n)
				if _, taken := k.nbd[dev]; !taken {
					break
				}
			}
			k.nbd[dev] = img
		}
		if k.failNextMapAfter {
			k.failNextMapAfter = false
			return []byte("map timed out"), fmt.Errorf("signal: killed")
		}
		return []byte(dev + "\n"), nil
	case "unmap":
		dev := args[1]
		if tool == "rbd" {
			id, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(dev), "rbd"))
			os.RemoveAll(filepath.Join(k.sys, "bus/rbd/devices", strconv.Itoa(id)))
		} else {
			delete(k.nbd, dev)
		}
		return nil, nil
	case "list-mapped":
		type entry struct {
			ID        int    `json:"id"`
			Pool      string `json:"pool"`
			Namespace string `json:"namespace"`
			Image     string `json:"image"`
			Snap      string `json:"snap"`
			Device    string `json:"device"`
		}
		list := []entry{}
		for dev, img := range k.nbd {
			list = append(list, entry{ID: 77, Pool: img.Pool, Namespace: img.Namespace, Image: img.Image, Snap: "-", Device: dev})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Device < list[j].Device })
		return json.Marshal(list)
	}
	return nil, nil
}

func (k *fakeKernel) runLosetup(args []string) ([]byte, error) {
	switch args[0] {
	case "--find":
		ro := false
		for _, a := range args {
			if a == "--read-only" || a == "-r" {
				ro = true
			}
		}
		return []byte("/dev/" + filepath.Base(k.attachLoop(args[len(args)-1], ro)) + "\n"), nil
	case "--list":
		var out []string
		for name, f := range k.loops {
			out = append(out, "/dev/"+name+" "+f)
		}
		sort.Strings(out)
		return []byte(strings.Join(out, "\n")), nil
	case "--detach":
		k.detachLoop(args[1])
	}
	return nil, nil
}

// writeRawRecord writes an attach record as a previous plugin (or another version) left it.
func writeRawRecord(t *testing.T, staging string, fields map[string]any) {
	t.Helper()
	data, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, recordFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// mountedFrom is the device mounted at path in the fake mount table, "" when none.
func mountedFrom(t *testing.T, fm *mount.FakeMounter, path string) string {
	t.Helper()
	mps, _ := fm.List()
	for _, mp := range mps {
		if filepath.Clean(mp.Path) == filepath.Clean(path) {
			return mp.Device
		}
	}
	return ""
}
