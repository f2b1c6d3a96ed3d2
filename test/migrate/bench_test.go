package migratetest

import (
	"encoding/json"
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

// mdsRequests is how many client requests the MDS has handled: a figure of the metadata
// work a copy costs that the machine's load does not blur (0 when the MDS cannot be asked).
func mdsRequests() float64 {
	out, err := exec.Command("ceph", "tell", "mds.0", "perf", "dump", "mds_server").Output()
	var d struct {
		Server struct {
			Requests float64 `json:"handle_client_request"`
		} `json:"mds_server"`
	}
	if err != nil || json.Unmarshal(out, &d) != nil {
		return 0
	}
	return d.Server.Requests
}

// perFile runs f and returns the MDS requests it caused per file.
func perFile(files int, f func()) float64 {
	before := mdsRequests()
	f()
	return (mdsRequests() - before) / float64(files)
}

// shipholdctlTime migrates dir to a new CephFS volume; the time includes creating the
// volume, mounting, copying and the verification that reads everything back. Each run has
// a tenant of its own: a run into an earlier run's target would replace its files.
func (s *stack) shipholdctlTime(t *testing.T, bin, dir string) (time.Duration, *result) {
	s.runs++
	start := time.Now()
	r := s.migrateBin(bin, "migrate", "--config", s.cfgFile, "--from", dir, "--tenant", fmt.Sprintf("%s-%d", s.tenant, s.runs), "--size", "4Gi",
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
	mb := func(d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }
	fps := func(d time.Duration) float64 { return float64(files) / d.Seconds() }
	// SHIPHOLD_BENCH_BASELINE names another shipholdctl build (an older commit's) timed in
	// the same run, between this one's passes, so that a busy machine loads both alike.
	base := os.Getenv("SHIPHOLD_BENCH_BASELINE")
	var bSmall, bLarge, tSmall, tLarge, rsSmall time.Duration
	var bReqs float64
	if base != "" {
		bReqs = perFile(files, func() { bSmall, _ = s.shipholdctlTime(t, base, small) })
	}
	var rSmall, rLarge *result
	reqs := perFile(files, func() { tSmall, rSmall = s.shipholdctlTime(t, shipholdctl, small) })
	if base != "" {
		bLarge, _ = s.shipholdctlTime(t, base, large)
	}
	tLarge, rLarge = s.shipholdctlTime(t, shipholdctl, large)
	rsReqs := perFile(files, func() { rsSmall = s.rsyncTime(t, small, "rsync-small") })
	rsLarge := s.rsyncTime(t, large, "rsync-large")
	fmt.Printf("bench migrate mds: requests/file shipholdctl=%.2f rsync=%.2f\n", reqs, rsReqs)
	if base != "" {
		fmt.Printf("bench migrate baseline %s: MB/s=%.1f files/s=%.0f ratio=%.1f mds_requests/file=%.2f (this build: MB/s=%.1f files/s=%.0f ratio=%.1f)\n",
			base, mb(bLarge), fps(bSmall), fps(bSmall)/fps(rsSmall), bReqs, mb(tLarge), fps(tSmall), fps(tSmall)/fps(rsSmall))
	}
	fmt.Printf("bench migrate small: %d files shipholdctl %.1fs (copy %.1fs verify %.1fs) rsync %.1fs\n",
		files, tSmall.Seconds(), rSmall.Result.CopyTime, rSmall.Result.VerifyTime, rsSmall.Seconds())
	fmt.Printf("bench migrate large: %d MB shipholdctl %.1fs (copy %.1fs verify %.1fs) rsync %.1fs; MB/s ratio=%.1f\n",
		bytes/1e6, tLarge.Seconds(), rLarge.Result.CopyTime, rLarge.Result.VerifyTime, rsLarge.Seconds(), mb(tLarge)/mb(rsLarge))
	// Where the large files' time went: the run's phases (setup is the volume's creation, the
	// mounts and the process's start, which rsync's time does not hold), and the streams'
	// stages summed over streams (a stage can exceed the wall time).
	lr, st := rLarge.Result, rLarge.Result.Stages
	engine := time.Duration(float64(lr.CopyTime+lr.VerifyTime) * float64(time.Second))
	fmt.Printf("bench migrate large phases: setup_s=%.1f scan_s=%.1f copy_s=%.1f verify_s=%.1f copy+verify MB/s=%.1f\n",
		tLarge.Seconds()-float64(lr.ScanTime+lr.CopyTime+lr.VerifyTime), lr.ScanTime, lr.CopyTime, lr.VerifyTime, mb(engine))
	fmt.Printf("bench migrate large stages: read_s=%.1f digest_s=%.1f write_s=%.1f close_s=%.1f sync_s=%.1f read_back_s=%.1f\n",
		st.Read, st.Digest, st.Write, st.Close, st.Sync, st.ReadBack)
	fmt.Printf("bench migrate: MB/s=%.1f files/s=%.0f rsync_MB/s=%.1f rsync_files/s=%.0f ratio=%.1f verify_s=%.1f\n",
		mb(tLarge), fps(tSmall), mb(rsLarge), fps(rsSmall), fps(tSmall)/fps(rsSmall),
		float64(rSmall.Result.VerifyTime+rLarge.Result.VerifyTime))
}
