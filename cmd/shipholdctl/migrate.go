package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/endpoint"
	"github.com/shiphold/shiphold/pkg/migrate/memfs"
	"github.com/shiphold/shiphold/pkg/volid"
)

// Exit codes of migrate beyond 0 (done, identical), 1 (error) and 2 (usage).
const (
	exitUnrepresentable = 3
	exitDifferences     = 4
	exitUnstable        = 5
)

type migrateFlags struct {
	adminFlags
	pvc, from, to, tenant, size, stateDir string
	verify, unrepresentable, progress     string
	snapshot                              string
	nodeAddress, kubeconfig, bwlimit      string
	final, cutover, dryRun, multiNode     bool
	parallel, nfsPort, mountPort          int
	params                                map[string]string
}

// openMigrationBackends opens both sides of every backend (stagers for RBD); tests replace it.
var openMigrationBackends = func(cfg *config.Config) (map[string]backend.Controller, map[string]backend.Stager, func(), error) {
	b, err := registry.Open(cfg, true, true)
	if err != nil {
		return nil, nil, nil, err
	}
	return b.Controllers, b.Stagers, b.Close, nil
}

func migrateCommand(stdout, stderr io.Writer) *cobra.Command {
	f := &migrateFlags{}
	cmd := &cobra.Command{
		Use:   "migrate (VOLUME_ID | --pvc NS/NAME | --from URL) --to BACKEND [--final] [--cutover]",
		Short: "copy a volume's data to a new shiphold volume on another backend, verified and resumable",
		Long: `Copies a volume's tree to a new shiphold volume on BACKEND for the same tenant: owners,
modes, nanosecond times, symlinks, hard links, holes, xattrs and POSIX ACLs, fifos and devices.
Every file is checksummed as read from the source and read back from the target. A journal in
--state-dir lets a killed run resume; --final (after the application stopped) copies what
changed, removes what was deleted and re-applies metadata. What the target cannot represent is
reported before anything is copied, and the run stops unless --unrepresentable says otherwise.

Sources: a shiphold VOLUME_ID on any backend, a PVC (--pvc, with --kubeconfig), or a plain
location (--from nfs://server/export/path or a directory, with --tenant and --size).

Exit codes: 0 identical, 1 error, 2 usage, 3 unrepresentable entries (nothing copied),
4 verification found differences, 5 files kept changing during --final.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMigrate(cmd.Context(), f, args, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	f.register(fl, 0)
	fl.StringVar(&f.pvc, "pvc", "", "the source PVC NS/NAME (needs --kubeconfig)")
	fl.StringVar(&f.from, "from", "", "a plain source: nfs://server/export/path[?nfsport=N&mountport=N] or a directory")
	fl.StringVar(&f.to, "to", "", "the target backend (a name from the config)")
	fl.StringVar(&f.tenant, "tenant", "", "the tenant of a plain source (a volume's own tenant otherwise)")
	fl.StringVar(&f.size, "size", "", "the target's size (default: the source volume's)")
	fl.StringVar(&f.stateDir, "state-dir", "", "where the journal lives (default /var/lib/shiphold/migrate/<migration>)")
	fl.StringVar(&f.verify, "verify", "full", "full (metadata and every file read back), metadata, or none")
	fl.StringVar(&f.unrepresentable, "unrepresentable", "stop", "what the target cannot hold: stop, skip (leave the entry out) or clamp (nearest value)")
	fl.StringVar(&f.progress, "progress", "auto", "auto (a bar on a terminal, JSON lines otherwise), bar, json or none")
	fl.StringVar(&f.nodeAddress, "node-address", "", "this host's address as the NFS server sees it (Isilon export grant)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for --pvc and --cutover")
	fl.StringVar(&f.bwlimit, "bwlimit", "", "cap reading the source, e.g. 100M (bytes per second)")
	fl.StringVar(&f.snapshot, "snapshot", "auto", "auto: the bulk pass reads a snapshot of a source volume taken for the run (CephFS; RBD through a clone of it; Isilon at <export>/.snapshot/<name>), removed after; never: read live")
	fl.BoolVar(&f.final, "final", false, "the incremental pass after the application stopped")
	fl.BoolVar(&f.cutover, "cutover", false, "after a clean final pass, re-bind the PVC to the new volume (needs --pvc)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan and what cannot be represented; change nothing")
	fl.BoolVar(&f.multiNode, "multi-node", false, "create the target for multi-node access")
	fl.IntVar(&f.parallel, "parallel", 16, "files copied at once")
	fl.IntVar(&f.nfsPort, "nfs-port", 0, "NFS port of the source or target server (default: portmapper)")
	fl.IntVar(&f.mountPort, "mount-port", 0, "MOUNT port of the NFS server (default: portmapper)")
	fl.StringToStringVar(&f.params, "param", nil, "StorageClass parameter of the target, key=value (repeatable)")
	cmd.AddCommand(rollbackCommand(stdout, stderr))
	return cmd
}

// source is what a migration copies from.
type source struct {
	key    string // canonical: the volume ID or the location
	tenant string
	volume *volid.Volume
	from   string
	pvc    *pvcRef
}

func (f *migrateFlags) source(args []string) (*source, error) {
	n := len(args)
	if f.pvc != "" {
		n++
	}
	if f.from != "" {
		n++
	}
	if n != 1 {
		return nil, usageError{errors.New("name the source once: a VOLUME_ID, --pvc NS/NAME or --from URL")}
	}
	switch {
	case len(args) == 1:
		id, err := volid.ParseVolume(args[0])
		if err != nil {
			return nil, usageError{fmt.Errorf("source %q: %w", args[0], err)}
		}
		return &source{key: id.String(), tenant: id.Tenant, volume: &id}, nil
	case f.from != "":
		if f.tenant == "" || f.size == "" {
			return nil, usageError{errors.New("--from needs --tenant and --size")}
		}
		return &source{key: f.from, tenant: f.tenant, from: f.from}, nil
	}
	ref, err := parsePVCRef(f.pvc)
	if err != nil {
		return nil, usageError{err}
	}
	return &source{key: "pvc:" + ref.String(), tenant: ref.Namespace, pvc: ref}, nil
}

func runMigrate(ctx context.Context, f *migrateFlags, args []string, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, err := f.source(args)
	if err != nil {
		return err
	}
	if f.to == "" {
		return usageError{errors.New("--to BACKEND is required")}
	}
	if (f.pvc != "" || f.cutover) && f.kubeconfig == "" {
		return usageError{errors.New("--pvc and --cutover need --kubeconfig")}
	}
	if f.snapshot != "auto" && f.snapshot != "never" {
		return usageError{fmt.Errorf("--snapshot %q: want auto or never", f.snapshot)}
	}
	if f.cutover && (!f.final || f.pvc == "") {
		return usageError{errors.New("--cutover goes with --final and --pvc: it re-binds the PVC after the last pass")}
	}
	cfg, err := config.Load(f.config, registry.Sections())
	if err != nil {
		return err
	}
	ctrls, stagers, closeAll, err := openMigrationBackends(cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	m := &migration{f: f, src: src, cfg: cfg, stdout: stdout, stderr: stderr,
		env: &endpoint.Env{Config: cfg, Controllers: ctrls, Stagers: stagers, NFSPort: f.nfsPort, MountPort: f.mountPort, Connections: f.parallel}}
	return m.run(ctx)
}

// migration is one invocation of migrate.
type migration struct {
	f      *migrateFlags
	src    *source
	cfg    *config.Config
	env    *endpoint.Env
	stdout io.Writer
	stderr io.Writer
	kube   *kubeClient
	target *backend.Volume
}

func (m *migration) run(ctx context.Context) error {
	if m.src.pvc != nil {
		if err := m.resolvePVC(ctx); err != nil {
			return err
		}
	}
	if err := m.prepareState(); err != nil {
		return err
	}
	srcSide, err := m.openSource(ctx)
	if err != nil {
		return err
	}
	defer m.closeSide("source", srcSide)
	dst, err := m.openTarget(ctx, srcSide)
	if err != nil {
		return err
	}
	defer m.closeSide("target", dst)
	res, runErr := m.copy(ctx, srcSide, dst)
	m.report(res, runErr)
	if code := exitCodeOf(runErr); code != 0 {
		return exitError{code}
	}
	if m.f.cutover && !m.f.dryRun {
		return m.cutover(ctx)
	}
	return nil
}

func exitCodeOf(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, migrate.ErrUnrepresentable):
		return exitUnrepresentable
	case errors.Is(err, migrate.ErrDifferences):
		return exitDifferences
	case errors.Is(err, migrate.ErrUnstable):
		return exitUnstable
	}
	return 1
}

func (m *migration) closeSide(what string, s *endpoint.Side) {
	if err := s.Close(); err != nil {
		fmt.Fprintf(m.stderr, "shipholdctl migrate: release the %s: %v\n", what, err)
	}
}

// prepareState picks the state directory: one per source and target backend.
func (m *migration) prepareState() error {
	if m.f.stateDir == "" {
		m.f.stateDir = filepath.Join("/var/lib/shiphold/migrate", volid.Hash(m.src.key+" -> "+m.f.to))
	}
	if err := os.MkdirAll(m.f.stateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	m.env.WorkDir = m.f.stateDir
	m.env.Session = "shiphold-migrate-" + volid.Hash(m.f.stateDir)
	host, _ := os.Hostname()
	m.env.Node = backend.Node{Name: "shipholdctl-migrate-" + host, Address: m.f.nodeAddress}
	// The bulk pass runs beside the site: a snapshot gives it one point in time. The final
	// pass runs after the site stopped and must see its last writes.
	m.env.Snapshot = m.f.snapshot == "auto" && !m.f.final && !m.f.dryRun
	m.env.DryRun = m.f.dryRun
	return nil
}

func (m *migration) openSource(ctx context.Context) (*endpoint.Side, error) {
	if m.src.volume != nil {
		return m.env.OpenVolume(ctx, *m.src.volume, endpoint.Source)
	}
	return endpoint.OpenLocation(m.src.from, m.f.parallel)
}

// openTarget creates (or finds) the target volume and opens it; a dry run plans against an
// empty stand-in with the target kind's limits when the volume does not exist yet.
func (m *migration) openTarget(ctx context.Context, src *endpoint.Side) (*endpoint.Side, error) {
	req, err := m.targetRequest(src)
	if err != nil {
		return nil, err
	}
	if m.f.dryRun {
		v, err := m.env.FindTarget(ctx, req)
		if err != nil || v == nil {
			kind := ""
			for _, b := range m.cfg.Backends {
				if b.Name == req.Backend {
					kind = b.Kind
				}
			}
			return &endpoint.Side{FS: memfs.New(endpoint.LimitsOf(kind)), What: "a new volume on " + req.Backend}, err
		}
		m.target = v
		return m.env.OpenVolume(ctx, v.ID, endpoint.Target)
	}
	v, err := m.env.EnsureTarget(ctx, req)
	if err != nil {
		return nil, err
	}
	m.target = v
	return m.env.OpenVolume(ctx, v.ID, endpoint.Target)
}

func (m *migration) targetRequest(src *endpoint.Side) (endpoint.TargetRequest, error) {
	bytes := src.Bytes
	if m.f.size != "" {
		var err error
		if bytes, err = parseSize(m.f.size); err != nil {
			return endpoint.TargetRequest{}, usageError{err}
		}
	}
	if bytes <= 0 {
		return endpoint.TargetRequest{}, usageError{errors.New("the source has no size: give --size")}
	}
	return endpoint.TargetRequest{Backend: m.f.to, Tenant: m.src.tenant, Name: endpoint.TargetName(m.src.key),
		Bytes: bytes, MultiNode: m.f.multiNode, Parameters: m.f.params}, nil
}

func (m *migration) copy(ctx context.Context, src, dst *endpoint.Side) (*migrate.Result, error) {
	verify, err := migrate.ParseVerifyMode(m.f.verify)
	if err != nil {
		return nil, usageError{err}
	}
	policy, err := migrate.ParsePolicy(m.f.unrepresentable)
	if err != nil {
		return nil, usageError{err}
	}
	var bw int64
	if m.f.bwlimit != "" {
		if bw, err = parseSize(m.f.bwlimit); err != nil {
			return nil, usageError{err}
		}
	}
	targetName := dst.What
	if m.target != nil {
		targetName = m.target.ID.String()
	}
	p := m.progress()
	p.Start(time.Second)
	defer p.Stop()
	fmt.Fprintf(m.stderr, "migrate: %s -> %s\n", src.What, dst.What)
	if src.Snapshot != "" {
		fmt.Fprintf(m.stderr, "source: snapshot %s\n", src.Snapshot)
	} else if m.env.Snapshot {
		fmt.Fprintln(m.stderr, "source: live (this source has no snapshot a reader can open: a PVC's NFS PV, a location)")
	} else {
		fmt.Fprintln(m.stderr, "source: live")
	}
	if err := afterSnapshotHook(ctx); err != nil {
		return nil, err
	}
	return migrate.Run(ctx, migrate.Options{Source: src.FS, Target: dst.FS, Verify: dst.Verify,
		StateDir: filepath.Join(m.f.stateDir, "journal"), Pair: m.src.key + " -> " + targetName,
		Final: m.f.final, SourceRenumbers: src.Renumbers, Parallel: m.f.parallel, BytesPerSecond: bw, VerifyMode: verify,
		DryRun: m.f.dryRun, Unrepresentable: policy, Progress: p})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (m *migration) progress() *migrate.Progress {
	switch m.f.progress {
	case "none":
		return migrate.NewProgress(nil, false)
	case "bar":
		return migrate.NewProgress(m.stderr, true)
	case "json":
		return migrate.NewProgress(m.stdout, false)
	}
	if isTerminal(m.stderr) {
		return migrate.NewProgress(m.stderr, true)
	}
	return migrate.NewProgress(m.stdout, false)
}

// report prints the result: JSON (one line) off a terminal, a summary on one.
func (m *migration) report(res *migrate.Result, err error) {
	if res == nil {
		return
	}
	if !isTerminal(m.stdout) || m.f.progress == "json" {
		line := struct {
			Event  string          `json:"event"`
			Target string          `json:"target,omitempty"`
			Error  string          `json:"error,omitempty"`
			Result *migrate.Result `json:"result"`
		}{Event: "result", Result: res}
		if m.target != nil {
			line.Target = m.target.ID.String()
		}
		if err != nil {
			line.Error = err.Error()
		}
		b, _ := json.Marshal(line)
		fmt.Fprintf(m.stdout, "%s\n", b)
	} else {
		m.summary(res)
	}
	if err != nil && exitCodeOf(err) == 1 {
		fmt.Fprintf(m.stderr, "shipholdctl migrate: %v\n", err)
	}
}

func (m *migration) summary(res *migrate.Result) {
	w := m.stdout
	for _, p := range res.Problems {
		fmt.Fprintf(w, "cannot represent %q: %s: %s (%s)\n", p.Path, p.Kind, p.Detail, p.Action)
	}
	pl := res.Plan
	fmt.Fprintf(w, "plan: %d entries (%s); copy %d files (%s), create %d, link %d, metadata %d, rename %d, remove %d\n",
		pl.SourceEntries, migrate.HumanBytes(pl.SourceBytes), pl.Copies, migrate.HumanBytes(pl.CopyBytes), pl.Creates,
		pl.Links, pl.Metadata, pl.Renames, pl.Removes)
	if m.f.dryRun {
		return
	}
	fmt.Fprintf(w, "copied %d files (%s), recopied %d files (%s), linked %d, metadata %d, renamed %d, removed %d\n",
		res.Copied.Files, migrate.HumanBytes(res.Copied.Bytes), res.Recopied.Files, migrate.HumanBytes(res.Recopied.Bytes),
		res.Linked, res.Metadata, res.Renamed, res.Removed)
	for _, p := range res.Unstable {
		fmt.Fprintf(w, "changed while copied (copy again with --final): %q\n", p)
	}
	for _, d := range res.Differences {
		fmt.Fprintln(w, "DIFFERENT "+d.String())
	}
	if m.target != nil {
		fmt.Fprintf(w, "verified %d files (%s); target volume %s\n", res.Verified.Files, migrate.HumanBytes(res.Verified.Bytes), m.target.ID)
	}
}
