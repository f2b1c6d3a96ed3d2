package migrate

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Record is what the journal knows about one target path: the source entry it was copied
// from, and whether that copy finished (durably, with its metadata).
type Record struct {
	Op     string   `json:"o"`
	Path   string   `json:"p"`
	To     string   `json:"n,omitempty"`
	Ino    uint64   `json:"i,omitempty"`
	Type   FileType `json:"t,omitempty"`
	Size   int64    `json:"z,omitempty"`
	Mtime  Timespec `json:"m"`
	Ctime  Timespec `json:"c"`
	Digest string   `json:"h,omitempty"`
	// Renumbered: Ino is a number the source showed only for this pass (Options.SourceRenumbers).
	Renumbered bool `json:"r,omitempty"`
}

// Journal operations.
const (
	opHeader  = "header"
	opStart   = "start"
	opDone    = "done"
	opRemoved = "removed"
	opRenamed = "renamed"
)

const journalFile = "journal.jsonl"

// Journal is the state directory's record of a migration. Done records are written only
// after the target has made the work durable (see commit), so a run killed at any point
// trusts exactly what the storage holds; a started path without a done record is recopied.
type Journal struct {
	dir  string
	lock *os.File
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	// done holds finished paths; started the paths begun and not finished in an earlier run.
	done    map[string]*Record
	started map[string]bool
	pending []*Record
	// Pair names the source and target the journal belongs to.
	Pair string
}

// OpenJournal locks the state directory and loads its journal. A journal written for
// another source and target pair is refused.
func OpenJournal(dir, pair string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("state directory %s is in use by another migration run", dir)
	}
	j := &Journal{dir: dir, lock: lock, done: map[string]*Record{}, started: map[string]bool{}, Pair: pair}
	if err := j.load(pair); err != nil {
		lock.Close()
		return nil, err
	}
	if err := j.rewrite(); err != nil {
		lock.Close()
		return nil, err
	}
	return j, nil
}

func (j *Journal) load(pair string) error {
	f, err := os.Open(filepath.Join(j.dir, journalFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue // a line torn by a kill; everything after it was never acknowledged
		}
		if r.Op == opHeader && r.Path != pair {
			return fmt.Errorf("state directory %s belongs to migration %q, not %q: use another --state-dir", j.dir, r.Path, pair)
		}
		j.replay(&r)
	}
	return sc.Err()
}

func (j *Journal) replay(r *Record) {
	switch r.Op {
	case opStart:
		// What a done record described is being replaced: the path is unfinished again.
		j.started[r.Path] = true
		delete(j.done, r.Path)
	case opDone:
		j.done[r.Path] = r
		delete(j.started, r.Path)
	case opRemoved:
		delete(j.done, r.Path)
		delete(j.started, r.Path)
	case opRenamed:
		j.move(r.Path, r.To)
	}
}

// move re-keys a renamed path and everything below it.
func (j *Journal) move(from, to string) {
	for p, r := range j.done {
		if p == from || strings.HasPrefix(p, from+"/") {
			delete(j.done, p)
			n := *r
			n.Path = to + p[len(from):]
			j.done[n.Path] = &n
		}
	}
}

// rewrite compacts the journal into one record per finished path.
func (j *Journal) rewrite() error {
	tmp := filepath.Join(j.dir, journalFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	enc := json.NewEncoder(w)
	enc.Encode(&Record{Op: opHeader, Path: j.Pair})
	for p := range j.started {
		enc.Encode(&Record{Op: opStart, Path: p})
	}
	for _, r := range j.done {
		enc.Encode(r)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := os.Rename(tmp, filepath.Join(j.dir, journalFile)); err != nil {
		return err
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, err = os.OpenFile(filepath.Join(j.dir, journalFile), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	j.w = bufio.NewWriterSize(j.f, 64<<10)
	return nil
}

// Done returns the finished record of path, or nil.
func (j *Journal) Done(path string) *Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.done[path]
}

// Started reports whether an earlier run began path without finishing it.
func (j *Journal) Started(path string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.started[path]
}

// Records returns a copy of every finished record.
func (j *Journal) Records() []*Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]*Record, 0, len(j.done))
	for _, r := range j.done {
		out = append(out, r)
	}
	return out
}

// Len counts finished records.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.done)
}

// Start records, at once, that path is about to be (re)written.
func (j *Journal) Start(path string) error {
	return j.append(&Record{Op: opStart, Path: path}, true)
}

// Finish queues a done record; it reaches the journal at the next commit, after the
// target's Sync.
func (j *Journal) Finish(r Record) {
	r.Op = opDone
	j.mu.Lock()
	j.pending = append(j.pending, &r)
	j.mu.Unlock()
}

// Removed records at once that path no longer exists on the target.
func (j *Journal) Removed(path string) error {
	return j.append(&Record{Op: opRemoved, Path: path}, true)
}

// Renamed records at once that the target moved from to to.
func (j *Journal) Renamed(from, to string) error {
	return j.append(&Record{Op: opRenamed, Path: from, To: to}, true)
}

// Pending counts done records waiting for a commit.
func (j *Journal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}

// Commit makes the target durable with sync, then writes the queued done records, and
// returns them.
func (j *Journal) Commit(sync func() error) ([]*Record, error) {
	j.mu.Lock()
	batch := j.pending
	j.pending = nil
	j.mu.Unlock()
	if len(batch) == 0 {
		return nil, nil
	}
	if err := sync(); err != nil {
		return nil, fmt.Errorf("make the target durable: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, r := range batch {
		if err := j.write(r); err != nil {
			return nil, err
		}
		j.replay(r)
	}
	return batch, j.w.Flush()
}

func (j *Journal) append(r *Record, flush bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.write(r); err != nil {
		return err
	}
	j.replay(r)
	if flush {
		return j.w.Flush()
	}
	return nil
}

func (j *Journal) write(r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = j.w.Write(append(b, '\n'))
	return err
}

// Compact rewrites the journal with only what is current.
func (j *Journal) Compact() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.w.Flush(); err != nil {
		return err
	}
	return j.rewrite()
}

// Close flushes and releases the state directory.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var err error
	if j.w != nil {
		err = j.w.Flush()
		j.f.Close()
	}
	j.lock.Close()
	return err
}
