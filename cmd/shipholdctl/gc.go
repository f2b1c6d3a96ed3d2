package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/gc"
)

type gcFlags struct {
	adminFlags
	kubeconfig string
	confirm    bool
}

func gcCommand(stdout, stderr io.Writer) *cobra.Command {
	f := &gcFlags{}
	cmd := &cobra.Command{
		Use:   "gc [--kubeconfig FILE] [--tenant T] [--confirm]",
		Short: "list (and with --confirm remove) what shiphold left that nothing uses",
		Long: `gc lists volumes no PersistentVolume references (only with --kubeconfig), record-less
volumes, trash entries and temporary snapshots of deletes, and export clients no node has
(with --kubeconfig: addresses no Node reports; without: clients no publish record accounts
for). Nothing changes without --confirm; with it each is removed through the backend
(DeleteVolume, the leftover collection, the export's client removal).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code := runGC(cmd.Context(), f, stdout, stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	f.register(cmd.Flags(), 5*time.Minute)
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster whose PVs, VolumeAttachments and Nodes count as users")
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "only this tenant's (the backends' leftover sweeps still run whole)")
	cmd.Flags().BoolVar(&f.confirm, "confirm", false, "remove what is listed")
	return cmd
}

// runGC lists the candidates, and removes them with --confirm; exit 1 when a backend could
// not be read or a removal failed.
func runGC(ctx context.Context, f *gcFlags, stdout, stderr io.Writer) int {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := config.Load(f.config, registry.Sections())
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl gc: %v\n", err)
		return 1
	}
	ctrls, closeAll, err := openBackends(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl gc: %v\n", err)
		return 1
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	// Without a cluster no volume is listed as unreferenced (every one would look so), so
	// --confirm can only remove a volume no PV references when --kubeconfig was given.
	finder := &gc.Finder{Backends: ctrls, Tenant: f.tenant}
	if f.kubeconfig != "" {
		client, err := newKubeClient(f.kubeconfig)
		if err == nil {
			finder.Cluster, err = gc.ReadCluster(ctx, client)
		}
		if err != nil {
			fmt.Fprintf(stderr, "shipholdctl gc: %v\n", err)
			return 1
		}
	}
	cands, errs := finder.Find(ctx)
	code := 0
	for _, err := range errs {
		fmt.Fprintf(stderr, "shipholdctl gc: %v\n", err)
		code = 1
	}
	printCandidates(stdout, cands)
	if !f.confirm {
		if len(cands) > 0 {
			fmt.Fprintf(stdout, "%d candidates; nothing removed (run again with --confirm to remove them)\n", len(cands))
		}
		return code
	}
	if code != 0 {
		fmt.Fprintln(stderr, "shipholdctl gc: not removing anything while a backend cannot be read")
		return code
	}
	return removeCandidates(ctx, ctrls, cands, stdout, stderr)
}

func printCandidates(stdout io.Writer, cands []gc.Candidate) {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "BACKEND\tTENANT\tKIND\tNAME\tWHY")
	for _, c := range cands {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Backend, orDash(c.Tenant), c.Kind, c.Name, c.Why)
	}
	w.Flush()
}

func removeCandidates(ctx context.Context, ctrls map[string]backend.Controller, cands []gc.Candidate, stdout, stderr io.Writer) int {
	code := 0
	for _, r := range gc.Remove(ctx, ctrls, cands) {
		if r.Err != nil {
			fmt.Fprintf(stderr, "shipholdctl gc: %s %s: %v\n", r.Kind, r.Name, r.Err)
			code = 1
			continue
		}
		if r.State != "" {
			// Collected: the storage finishes it in the background, or a clone still needs it.
			fmt.Fprintf(stdout, "collected %s %s: %s\n", r.Kind, r.Name, r.State)
			continue
		}
		fmt.Fprintf(stdout, "removed %s %s\n", r.Kind, r.Name)
	}
	return code
}
