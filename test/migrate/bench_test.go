package migratetest

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// benchTree writes the bench's tree: 10k small files in 100 directories, and large files.
func benchTree(t *testing.T, dir string) (small, large string, files int, largeBytes int64) {
	small, large = filepath.Join(dir, "small"), filepath.Join(dir, "large")
	rng := rand.New(rand.NewSource(9))
	buf := make([]byte, 1<<20)
	for d := 0; d < 100; d++ {
		sub := filepath.Join(small, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 100; f++ {
			rng.Read(buf[:8192])
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d.html", f)), buf[:1+rng.Intn(8192)], 0o644); err != nil {
				t.Fatal(err)
			}
			files++
		}
	}
	if err := os.MkdirAll(large, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		f, err := os.Create(filepath.Join(large, fmt.Sprintf("video-%d.mp4", i)))
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 200; n++ {
			rng.Read(buf)
			f.Write(buf)
			largeBytes += int64(len(buf))
		}
		f.Close()
	}
	return small, large, files, largeBytes
}

// shipholdctlTime migrates dir to a new CephFS volume; the time includes creating the
// volume, mounting, copying and the verification that reads everything back.
func (s *stack) shipholdctlTime(t *testing.T, dir string) (time.Duration, *result) {
	start := time.Now()
	r := s.migrate("migrate", "--config", s.cfgFile, "--from", dir, "--tenant", s.tenant, "--size", "4Gi",
		"--to", cephfsBackend, "--state-dir", t.TempDir(), "--progress", "none")
	took := time.Since(start)
	res := r.must(t, "shipholdctl migrate "+dir)
	s.targetOf(res)
	return took, res
}

// rsyncTime copies dir with rsync -aHAX onto a ceph-fuse mount of an equal CephFS volume,
// until the copy is durable: rsync ends with its data still in ceph-fuse's cache, which no
// sync(2) reaches through FUSE, so the time runs until the unmount has flushed it and
// ceph-fuse has exited (shipholdctl's ends after its own sync and read-back).
func (s *stack) rsyncTime(t *testing.T, dir, name string) time.Duration {
	v := s.volume(cephfsBackend, name, 4<<30)
	mnt, unstage := s.stage(v, false)
	defer unstage()
	start := time.Now()
	if out, err := exec.Command("rsync", "-aHAX", "--numeric-ids", dir+"/", mnt+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	unstage()
	return time.Since(start)
}

// TestMigrateBench copies one tree with shipholdctl and with rsync -aHAX through ceph-fuse,
// in the same run: files/s on its 10k small files, MB/s on its large ones. Run with
// SHIPHOLD_BENCH=1 (make bench-migrate).
func TestMigrateBench(t *testing.T) {
	if os.Getenv("SHIPHOLD_BENCH") != "1" {
		t.Skip("set SHIPHOLD_BENCH=1 (make bench-migrate)")
	}
	_, err := exec.LookPath("rsync")
	if err != nil {
		t.Fatal("rsync is not installed (apt-get install rsync)")
	}
	s := newStack(t)
	small, large, files, bytes := benchTree(t, t.TempDir())
	tSmall, rSmall := s.shipholdctlTime(t, small)
	tLarge, rLarge := s.shipholdctlTime(t, large)
	rsSmall := s.rsyncTime(t, small, "rsync-small")
	rsLarge := s.rsyncTime(t, large, "rsync-large")
	mb := func(d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }
	fps := func(d time.Duration) float64 { return float64(files) / d.Seconds() }
	fmt.Printf("bench migrate small: %d files shipholdctl %.1fs (copy %.1fs verify %.1fs) rsync %.1fs\n",
		files, tSmall.Seconds(), rSmall.Result.CopyTime, rSmall.Result.VerifyTime, rsSmall.Seconds())
	fmt.Printf("bench migrate large: %d MB shipholdctl %.1fs (copy %.1fs verify %.1fs) rsync %.1fs; MB/s ratio=%.1f\n",
		bytes/1e6, tLarge.Seconds(), rLarge.Result.CopyTime, rLarge.Result.VerifyTime, rsLarge.Seconds(), mb(tLarge)/mb(rsLarge))
	fmt.Printf("bench migrate: MB/s=%.1f files/s=%.0f rsync_MB/s=%.1f rsync_files/s=%.0f ratio=%.1f verify_s=%.1f\n",
		mb(tLarge), fps(tSmall), mb(rsLarge), fps(rsSmall), fps(tSmall)/fps(rsSmall),
		float64(rSmall.Result.VerifyTime+rLarge.Result.VerifyTime))
}
