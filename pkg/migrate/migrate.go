package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// VerifyMode says how a run proves the target equals the source.
type VerifyMode string

// Verification modes.
const (
	// VerifyFull compares metadata and reads every file back from the target, comparing its
	// checksum with the one taken as the source was read.
	VerifyFull VerifyMode = "full"
	// VerifyMetadata compares the trees' metadata only.
	VerifyMetadata VerifyMode = "metadata"
	// VerifyNone skips verification.
	VerifyNone VerifyMode = "none"
)

// ParseVerifyMode reads a --verify value.
func ParseVerifyMode(s string) (VerifyMode, error) {
	switch m := VerifyMode(s); m {
	case VerifyFull, VerifyMetadata, VerifyNone:
		return m, nil
	case "":
		return VerifyFull, nil
	}
	return "", fmt.Errorf("verify mode %q: use full, metadata or none", s)
}

// Options configure one run.
type Options struct {
	Source FS
	Target FS
	// Verify reads the target back for verification; it should not share the writer's
	// cache (a second CephFS client, a page cache dropped). Target when nil.
	Verify FS
	// StateDir holds the journal; Pair names the source and target it belongs to.
	StateDir string
	Pair     string
	// Final is the pass after the application stopped: files that change while read are
	// errors rather than left for a later pass.
	Final bool
	// SourceRenumbers says the source shows its files under numbers of its own (a
	// snapshot whose fileids are not the live files'): what is copied from it is recognised
	// later by type, size and mtime, as rsync does, not by inode number.
	SourceRenumbers bool
	Parallel        int
	BytesPerSecond  int64
	VerifyMode      VerifyMode
	DryRun          bool
	Unrepresentable Policy
	// CommitInterval bounds how long finished work waits for a target sync before it is
	// journaled.
	CommitInterval time.Duration
	Progress       *Progress
}

// Result is what one run did and found.
type Result struct {
	Plan        PlanSummary  `json:"plan"`
	Problems    []Problem    `json:"problems,omitempty"`
	Copied      Counts       `json:"copied"`
	Recopied    Counts       `json:"recopied"`
	Removed     int64        `json:"removed"`
	Renamed     int64        `json:"renamed"`
	Linked      int64        `json:"linked"`
	Metadata    int64        `json:"metadata_updated"`
	Unstable    []string     `json:"changed_while_copying,omitempty"`
	Differences []Difference `json:"differences,omitempty"`
	Verified    Counts       `json:"verified"`
	ScanTime    Seconds      `json:"scan_s"`
	CopyTime    Seconds      `json:"copy_s"`
	VerifyTime  Seconds      `json:"verify_s"`
	Stages      Stages       `json:"stages"`
}

// Counts are files and bytes.
type Counts struct {
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Seconds is a duration in seconds.
type Seconds float64

func since(t time.Time) Seconds { return Seconds(time.Since(t).Seconds()) }

// Errors a run ends with; the Result says more.
var (
	ErrUnrepresentable = errors.New("the source holds what the target cannot represent")
	ErrDifferences     = errors.New("verification found differences")
	ErrUnstable        = errors.New("files changed while being copied in the final pass")
)

// Run copies Source to Target as Options say. It returns the Result also with an error.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	res := &Result{}
	j, err := OpenJournal(o.StateDir, o.Pair)
	if err != nil {
		return res, err
	}
	defer j.Close()
	e := &engine{o: o, j: j, res: res, limit: newLimiter(o.BytesPerSecond), p: o.Progress}
	defer func() { res.Stages = e.stages.result() }()
	start := time.Now()
	e.p.phase("scan")
	if err := e.scan(ctx); err != nil {
		return res, err
	}
	res.ScanTime = since(start)
	if res.Problems = preflight(e.src, o.Target.Limits(), o.Unrepresentable); len(res.Problems) > 0 && o.Unrepresentable == PolicyStop {
		return res, ErrUnrepresentable
	}
	plan, err := e.plan(ctx)
	if err != nil {
		return res, err
	}
	res.Plan = plan.summary(e.src)
	if o.DryRun {
		return res, nil
	}
	start = time.Now()
	e.p.phase("copy")
	if err := e.execute(ctx, plan); err != nil {
		return res, err
	}
	res.CopyTime = since(start)
	if o.Final && len(res.Unstable) > 0 {
		return res, ErrUnstable
	}
	if o.VerifyMode == VerifyNone {
		return res, nil
	}
	start = time.Now()
	e.p.phase("verify")
	err = e.verify(ctx)
	res.VerifyTime = since(start)
	if err != nil {
		return res, err
	}
	if len(res.Differences) > 0 {
		return res, ErrDifferences
	}
	return res, nil
}

func (o *Options) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 16
	}
	if o.Verify == nil {
		o.Verify = o.Target
	}
	if o.VerifyMode == "" {
		o.VerifyMode = VerifyFull
	}
	if o.Unrepresentable == "" {
		o.Unrepresentable = PolicyStop
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = 500 * time.Millisecond
	}
	if o.Pair == "" {
		o.Pair = "migration"
	}
	if o.Progress == nil {
		o.Progress = NewProgress(nil, false)
	}
}

// engine is one run's state.
type engine struct {
	o     Options
	j     *Journal
	res   *Result
	limit *limiter
	p     *Progress
	src   *Tree
	dst   *Tree
	// inline verifies files read back as their copies are committed, while copying goes on.
	inline *inlineVerify
	// stages times what the copying and the verification spend their time on.
	stages stageClock
	// copied holds the digest of each file whose content this run finished, by path: its
	// done record waits for a commit, and the journal still holds an earlier run's.
	copied sync.Map
}

// scan reads the source (with xattrs and symlink targets) and the target (lstat only).
func (e *engine) scan(ctx context.Context) error {
	var err error
	if e.src, err = scan(ctx, e.o.Source, scanOptions{xattrs: true, links: true, parallel: e.o.Parallel}); err != nil {
		return fmt.Errorf("scan the source: %w", err)
	}
	if e.dst, err = scan(ctx, e.o.Target, scanOptions{parallel: e.o.Parallel}); err != nil {
		return fmt.Errorf("scan the target: %w", err)
	}
	return nil
}
