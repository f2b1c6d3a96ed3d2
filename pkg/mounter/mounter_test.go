package mounter

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoopAttachReusesDevice(t *testing.T) {
	m, _, fe := NewFake()
	listed := "/dev/loop3 /var/lib/kubelet/x/rbd-fuse/img\n/dev/loop4 /other (deleted)\n"
	fe.Handler = func(name string, args ...string) ([]byte, error) {
		if args[0] == "--list" {
			return []byte(listed), nil
		}
		return []byte("/dev/loop9\n"), nil
	}
	ctx := context.Background()
	if dev, err := m.LoopAttach(ctx, "/var/lib/kubelet/x/rbd-fuse/img", false); err != nil || dev != "/dev/loop3" {
		t.Fatalf("reuse: %s %v", dev, err)
	}
	if dev, err := m.LoopFind(ctx, "/other"); err != nil || dev != "/dev/loop4" {
		t.Fatalf("deleted backing file: %s %v", dev, err)
	}
	if _, err := m.LoopFind(ctx, "/nope"); !errors.Is(err, ErrNoLoopDevice) {
		t.Fatalf("missing: %v", err)
	}
	if dev, err := m.LoopAttach(ctx, "/new", false); err != nil || dev != "/dev/loop9" {
		t.Fatalf("new: %s %v", dev, err)
	}
	if got := fe.Commands()[len(fe.Commands())-1]; got != "losetup --find --show --direct-io=on /new" {
		t.Fatalf("attach command %q", got)
	}
}

func TestLoopDetachGoneIsFine(t *testing.T) {
	m, _, fe := NewFake()
	fe.Handler = func(name string, args ...string) ([]byte, error) {
		return []byte("losetup: /dev/loop5: detach failed: No such device or address"), errors.New("exit status 1")
	}
	if err := m.LoopDetach(context.Background(), "/dev/loop5"); err != nil {
		t.Fatal(err)
	}
	fe.Handler = func(name string, args ...string) ([]byte, error) { return []byte("busy"), errors.New("exit status 1") }
	if err := m.LoopDetach(context.Background(), "/dev/loop5"); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("busy: %v", err)
	}
}

func TestFormatAndMountDefaultsAndUnmountEvery(t *testing.T) {
	m, fm, fe := NewFake()
	target := filepath.Join(t.TempDir(), "fs")
	if err := m.FormatAndMount("/dev/loop1", target, "", []string{"noatime"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(fe.Commands(), "\n"), "mkfs.ext4") {
		t.Fatalf("no mkfs.ext4 in %v", fe.Commands())
	}
	if mounted, _ := m.IsMounted(target); !mounted {
		t.Fatal("not mounted")
	}
	fm.Mount("/dev/loop1", target, "ext4", nil) // mounted twice by a retried stage
	if stuck, err := UnmountEvery(context.Background(), m, target, time.Second); err != nil || stuck {
		t.Fatal(err)
	}
	if mounted, _ := m.IsMounted(target); mounted {
		t.Fatal("still mounted")
	}
}

func TestDeviceSize(t *testing.T) {
	m, _, fe := NewFake()
	fe.Handler = func(string, ...string) ([]byte, error) { return []byte("268435456\n"), nil }
	if n, err := m.DeviceSize(context.Background(), "/dev/loop1"); err != nil || n != 256<<20 {
		t.Fatalf("%d %v", n, err)
	}
}
