package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// TestIdleTrimOncePerQuietSpell: the plugin gives memory back once it has had no call for
// the quiet time, once per quiet spell, and never while a call runs.
func TestIdleTrimOncePerQuietSpell(t *testing.T) {
	now := time.Unix(1000, 0)
	trims := 0
	tr := newIdleTrim(10 * time.Second)
	tr.now, tr.trim, tr.last = func() time.Time { return now }, func() { trims++ }, now
	step := func(d time.Duration, wantTrims int, what string) {
		t.Helper()
		now = now.Add(d)
		tr.check()
		if trims != wantTrims {
			t.Fatalf("%s: %d trims, want %d", what, trims, wantTrims)
		}
	}
	step(9*time.Second, 0, "9s after the start")
	step(time.Second, 1, "10s after the start")
	step(time.Minute, 1, "a minute later, no call in between")

	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = tr.interceptor(context.Background(), nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
			<-release
			return nil, nil
		})
	}()
	for tr.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	step(time.Hour, 1, "an hour into a call")
	close(release)
	wg.Wait()
	step(9*time.Second, 1, "9s after the call ended")
	step(time.Second, 2, "10s after the call ended")
}

// TestDropFilePagesKeepsPrivateCopies: dropping the read-only file pages of this very test
// process lowers its resident file pages, and the process goes on running; a read-only
// mapping holding a private copy of a page (as relocated library data does) keeps it.
func TestDropFilePagesKeepsPrivateCopies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, make([]byte, 2*os.Getpagesize()), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 2*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	mem[0] = 42 // a private copy of the first page, as relocations make
	if err := unix.Mprotect(mem, unix.PROT_READ); err != nil {
		t.Fatal(err)
	}

	before := statusKB(t, "RssFile")
	dropped, err := dropFilePages("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	after := statusKB(t, "RssFile")
	if dropped == 0 || after >= before {
		t.Errorf("dropped %d KiB; resident file pages %d KiB before, %d KiB after: want fewer", dropped, before, after)
	}
	if mem[0] != 42 {
		t.Errorf("the private copy of a read-only file page was dropped: reads %d, want 42", mem[0])
	}
}

func statusKB(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestTrimGivesTheCHeapBack: what a burst of C allocations freed, the trim gives back to the
// kernel; malloc alone keeps it while a block above it is still in use.
func TestTrimGivesTheCHeapBack(t *testing.T) {
	before := statusKB(t, "RssAnon")
	cHeapChurn(200000, 256) // 50 MiB in 256-byte blocks, the last one kept
	churned := statusKB(t, "RssAnon")
	if churned-before < 40<<10 {
		t.Fatalf("the churn left %d KiB resident, want the freed 50 MiB still held", churned-before)
	}
	trimMemory()
	if after := statusKB(t, "RssAnon"); churned-after < 40<<10 {
		t.Errorf("resident anonymous memory %d KiB after the churn, %d KiB after the trim: want the freed 50 MiB given back", churned, after)
	}
}
