package onefssim_test

import (
	"context"
	"errors"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dell/goisilon"

	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/onefssim"
)

// TestHardQuotaEnforcedOnWrites: with EnforceHardQuotas, a write past a directory's hard
// threshold fails with EDQUOT, whoever writes (here the filesystem directly; the NFS
// path is tested in test/isilon), and raising or removing the quota lifts the limit.
func TestHardQuotaEnforcedOnWrites(t *testing.T) {
	_, err := exec.LookPath("mkfs.btrfs")
	harness.Require(t, "root and btrfs-progs", os.Geteuid() == 0 && err == nil, "run as root; apt-get install btrfs-progs")
	root, cleanup, err := onefssim.NewBtrfsRoot(t.TempDir(), 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cleanup(); err != nil {
			t.Error(err)
		}
	})
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := onefssim.New(onefssim.Options{Root: root, Listen: "127.0.0.1:0", EnforceHardQuotas: true, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() }) // before the unmount: runs first
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := goisilon.NewClientWithArgs(ctx, u, true, 1, "admin", "", "admin", "/ifs/data", "0777", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolumeWithIsipath(ctx, "/ifs/data", "vol", "0777"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data/vol")
	if err := os.WriteFile(filepath.Join(dir, "before"), make([]byte, 100<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateQuotaWithPath(ctx, "/ifs/data/vol", true, 1<<20, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "before")); err != nil || len(b) != 100<<10 {
		t.Fatalf("data written before the quota: %d bytes %v", len(b), err)
	}
	write := func(name string, n int) error {
		err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o644)
		if err == nil {
			err = syncDir(dir)
		}
		return err
	}
	if err := write("small", 300<<10); err != nil {
		t.Fatalf("write under the hard threshold: %v", err)
	}
	if err := write("big", 2<<20); err == nil {
		t.Fatal("a 2 MiB write under a 1 MiB hard quota succeeded")
	} else if !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("write past the quota: %v, want EDQUOT", err)
	}
	if err := c.UpdateQuotaSizeByID(ctx, id, 8<<20, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := write("big", 2<<20); err != nil {
		t.Fatalf("write after raising the threshold: %v", err)
	}
	if err := c.ClearQuotaByID(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := write("bigger", 12<<20); err != nil {
		t.Fatalf("write after removing the quota: %v", err)
	}
	// A directory with an enforced quota is still deleted by the namespace API.
	if err := c.DeleteVolumeWithIsiPath(ctx, "/ifs/data", "vol"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory left: %v", err)
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
