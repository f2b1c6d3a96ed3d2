package migrate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDeviceNumbersAsGlibc(t *testing.T) {
	for _, d := range [][2]uint32{{0, 0}, {1, 3}, {8, 17}, {259, 70000}, {4095, 1<<20 - 1}, {5000, 1}, {1 << 20, 1 << 30}} {
		rdev := Mkdev(d[0], d[1])
		if want := unix.Mkdev(d[0], d[1]); rdev != want {
			t.Fatalf("Mkdev(%d, %d) = %#x, glibc %#x", d[0], d[1], rdev, want)
		}
		if DevMajor(rdev) != unix.Major(rdev) || DevMinor(rdev) != unix.Minor(rdev) {
			t.Fatalf("%#x splits into %d:%d, glibc %d:%d", rdev, DevMajor(rdev), DevMinor(rdev), unix.Major(rdev), unix.Minor(rdev))
		}
	}
}

// A kill can leave the journal's last line torn: it is ignored, and what came before it
// stands; a start without a done is an unfinished path.
func TestJournalSurvivesATornLine(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "pair")
	if err != nil {
		t.Fatal(err)
	}
	j.Start("a")
	j.Finish(Record{Path: "a", Ino: 7, Type: TypeRegular, Size: 3, Digest: "d"})
	if _, err := j.Commit(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	j.Start("b")
	j.Close()
	f, _ := os.OpenFile(filepath.Join(dir, journalFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"o":"done","p":"b","i":9,"t":1,"z":`)
	f.Close()
	j, err = OpenJournal(dir, "pair")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if r := j.Done("a"); r == nil || r.Digest != "d" || r.Ino != 7 {
		t.Fatalf("finished record lost: %+v", r)
	}
	if j.Done("b") != nil || !j.Started("b") {
		t.Fatal("a torn done record was trusted")
	}
}

// A path begun again after an earlier run finished it is no longer finished: its rewrite
// replaces (or truncates) what the done record described, so a run killed part-way through
// it leaves a started path, copied again, not a finished one trusted on the old record.
func TestJournalRestartedPathIsNotFinished(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "pair")
	if err != nil {
		t.Fatal(err)
	}
	j.Finish(Record{Path: "a", Ino: 7, Type: TypeRegular, Size: 3, Digest: "d"})
	if _, err := j.Commit(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := j.Start("a"); err != nil {
		t.Fatal(err)
	}
	if j.Done("a") != nil {
		t.Fatal("a path being rewritten is still journaled finished")
	}
	j.Close()
	j, err = OpenJournal(dir, "pair")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if r := j.Done("a"); r != nil || !j.Started("a") {
		t.Fatalf("after a kill during its rewrite: done %+v, started %v; want started alone", r, j.Started("a"))
	}
}

// A done record reaches the journal only after the target's sync succeeded.
func TestJournalCommitsAfterSync(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), "pair")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Finish(Record{Path: "a", Type: TypeRegular})
	if _, err := j.Commit(func() error { return os.ErrDeadlineExceeded }); err == nil {
		t.Fatal("commit without a sync")
	}
	if j.Done("a") != nil {
		t.Fatal("a record was journaled though the target did not sync")
	}
}

func TestProgressReports(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, false)
	p.phase("copy")
	p.setTotals(10, 1000)
	p.fileDone()
	p.addBytes(100)
	p.report()
	var s Snapshot
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.Phase != "copy" || s.FilesDone != 1 || s.BytesTotal != 1000 {
		t.Fatalf("JSON line %q: %+v %v", out.String(), s, err)
	}
	out.Reset()
	p.tty = true
	p.report()
	if line := out.String(); !strings.HasPrefix(line, "\r\033[K") || !strings.Contains(line, "1/10 files") || !strings.Contains(line, "ETA") {
		t.Fatalf("bar %q", line)
	}
}

func TestLimiterPaces(t *testing.T) {
	l := newLimiter(4 << 20)
	start := time.Now()
	for i := 0; i < 12; i++ {
		l.wait(1 << 20) // 12 MiB at 4 MiB/s, one second of burst
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("12 MiB at 4 MiB/s took %v", took)
	}
	var none *limiter
	none.wait(1 << 30) // no limit: returns at once
}
