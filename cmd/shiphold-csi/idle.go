package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// idleTrim gives memory back once the plugin has had no call for quiet: the Go heap's free
// spans (debug.FreeOSMemory), the C heap's (trimCHeap) and the pages of the binary and the libraries that only start
// and earlier calls touched (dropFilePages). It trims once per quiet spell; the next call
// starts a new one. A call after a trim faults the code it runs back in from the page cache
// (minor faults, no disk reads).
type idleTrim struct {
	quiet    time.Duration
	now      func() time.Time
	trim     func()
	inFlight atomic.Int64
	mu       sync.Mutex
	last     time.Time // the end of the last call, or the start
	trimmed  bool      // since last
}

func newIdleTrim(quiet time.Duration) *idleTrim {
	t := &idleTrim{quiet: quiet, now: time.Now, trim: trimMemory}
	t.last = t.now()
	return t
}

// interceptor counts the calls in flight and when the last one ended.
func (t *idleTrim) interceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	t.inFlight.Add(1)
	defer func() {
		t.mu.Lock()
		t.last, t.trimmed = t.now(), false
		t.mu.Unlock()
		t.inFlight.Add(-1)
	}()
	return handler(ctx, req)
}

// check trims when no call is in flight, none ended within quiet and this quiet spell has
// not been trimmed yet; it reports whether it trimmed.
func (t *idleTrim) check() bool {
	if t.inFlight.Load() > 0 {
		return false
	}
	t.mu.Lock()
	due := !t.trimmed && t.now().Sub(t.last) >= t.quiet
	t.trimmed = t.trimmed || due
	t.mu.Unlock()
	if due {
		t.trim()
	}
	return due
}

// run checks every quiet/4 until ctx ends.
func (t *idleTrim) run(ctx context.Context) {
	tick := time.NewTicker(max(t.quiet/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.check()
		}
	}
}

func trimMemory() {
	debug.FreeOSMemory()
	trimCHeap()
	n, err := dropFilePages("/proc/self/smaps")
	if err != nil {
		klog.V(4).Infof("idle: file pages not dropped: %v", err)
		return
	}
	klog.V(4).Infof("idle: dropped %d KiB of file pages from the resident set", n)
}

// dropFilePages unmaps the resident pages of the process's read-only file mappings (the
// binary's and the libraries' code and constants) that hold no private copy of a page
// (Anonymous: 0 kB, as the libraries' relocated read-only data does): such a page is the
// page cache's, and stays there; the next access maps it again. It returns how many KiB
// were resident in the mappings it dropped.
func dropFilePages(smaps string) (int64, error) {
	f, err := os.Open(smaps)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	type mapping struct {
		start, end uintptr
		fileRO     bool
		rss, anon  int64
	}
	var maps []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			lo, hi, _ := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				return 0, fmt.Errorf("%s: mapping %q", smaps, fields[0])
			}
			// A file mapping: a path, a private read-only (r--p, r-xp) mapping.
			ro := len(fields) >= 6 && strings.HasPrefix(fields[5], "/") && (fields[1] == "r--p" || fields[1] == "r-xp")
			maps = append(maps, mapping{start: uintptr(start), end: uintptr(end), fileRO: ro})
			continue
		}
		if len(maps) == 0 || len(fields) != 3 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			maps[len(maps)-1].rss = kb
		case "Anonymous:":
			maps[len(maps)-1].anon = kb
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	var dropped int64
	for _, m := range maps {
		if !m.fileRO || m.anon != 0 || m.rss == 0 {
			continue
		}
		// By address: the mapping is not Go memory, so not a slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return dropped, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		dropped += m.rss
	}
	return dropped, nil
}
