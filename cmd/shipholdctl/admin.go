package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/tenant"
)

// openBackends opens the controller side of every configured backend; tests replace it.
var openBackends = func(cfg *config.Config) (map[string]backend.Controller, func(), error) {
	b, err := registry.Open(cfg, true, false)
	if err != nil {
		return nil, nil, err
	}
	return b.Controllers, b.Close, nil
}

// adminFlags are what every command that reads the storage directly takes.
type adminFlags struct {
	config  string
	tenant  string
	timeout time.Duration
}

// adminCommands are backends, volumes, tenants and leftovers: the storage as the driver's
// config names it.
func adminCommands(stdout, stderr io.Writer) []*cobra.Command {
	var out []*cobra.Command
	for _, c := range []struct{ name, short string }{
		{"backends", "reachability and free capacity of each backend"},
		{"volumes", "volumes on every backend, per tenant"},
		{"tenants", "usage per tenant against its quota"},
		{"leftovers", "what deletes left for the storage to remove (RBD trash entries, clone snapshots)"},
	} {
		f := &adminFlags{}
		cmd := &cobra.Command{Use: c.name, Short: c.short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if code := runAdmin(cmd.Name(), f, stdout, stderr); code != 0 {
					return exitError{code}
				}
				return nil
			}}
		f.register(cmd.Flags(), 30*time.Second)
		if c.name == "volumes" {
			cmd.Flags().StringVar(&f.tenant, "tenant", "", "only this tenant")
		}
		if c.name == "tenants" {
			cmd.AddCommand(rotateKeyCommand(stdout, stderr))
		}
		out = append(out, cmd)
	}
	return out
}

func (f *adminFlags) register(fs *pflag.FlagSet, timeout time.Duration) {
	fs.StringVar(&f.config, "config", "/etc/shiphold/config.yaml", "the driver's config file")
	fs.DurationVar(&f.timeout, "timeout", timeout, "deadline of the whole command")
}

// runAdmin serves the commands that talk to the storage directly, with the driver's config.
func runAdmin(cmd string, f *adminFlags, stdout, stderr io.Writer) int {
	configPath, tenantName, timeout := &f.config, &f.tenant, &f.timeout
	cfg, err := config.Load(*configPath, registry.Sections())
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl %s: %v\n", cmd, err)
		return 1
	}
	ctrls, closeAll, err := openBackends(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl %s: %v\n", cmd, err)
		return 1
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()

	switch cmd {
	case "backends":
		return backendsTable(ctx, w, ctrls)
	case "volumes":
		vols, err := tenant.Volumes(ctx, ctrls, *tenantName)
		if err != nil {
			fmt.Fprintf(stderr, "shipholdctl volumes: %v\n", err)
			return 1
		}
		fmt.Fprintln(w, "TENANT\tBACKEND\tSIZE\tREQUEST\tVOLUME ID")
		for _, v := range vols {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.ID.Tenant, v.ID.Backend, humanBytes(v.CapacityBytes), orDash(v.RequestName), v.ID)
		}
	case "leftovers":
		return leftoversTable(ctx, w, stderr, ctrls)
	case "tenants":
		vols, err := tenant.Volumes(ctx, ctrls, "")
		if err != nil {
			fmt.Fprintf(stderr, "shipholdctl tenants: %v\n", err)
			return 1
		}
		fmt.Fprintln(w, "TENANT\tVOLUMES\tSIZE\tQUOTA VOLUMES\tQUOTA SIZE\tBY BACKEND")
		for _, u := range tenant.Summarize(vols, cfg.Tenants) {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", u.Tenant, u.Volumes, humanBytes(u.Bytes),
				limit(int64(u.Quota.MaxVolumes), count), limit(u.Quota.MaxBytes, humanBytes), byBackend(u))
		}
	}
	return 0
}

// backendsTable probes every backend; the exit code is 1 when any is unreachable.
func backendsTable(ctx context.Context, w io.Writer, ctrls map[string]backend.Controller) int {
	names := make([]string, 0, len(ctrls))
	for n := range ctrls {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "BACKEND\tKIND\tSTATUS\tAVAILABLE")
	code := 0
	for _, n := range names {
		c := ctrls[n]
		state, avail := "reachable", "-"
		if err := c.Probe(ctx); err != nil {
			state, code = "UNREACHABLE: "+err.Error(), 1
		} else if bytes, err := c.Capacity(ctx, nil); err == nil {
			avail = humanBytes(bytes)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n, c.Kind(), state, avail)
	}
	return code
}

func byBackend(u *tenant.Usage) string {
	names := make([]string, 0, len(u.ByBackend))
	for n := range u.ByBackend {
		names = append(names, n)
	}
	sort.Strings(names)
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		b := u.ByBackend[n]
		out += fmt.Sprintf("%s: %d (%s)", n, b.Volumes, humanBytes(b.Bytes))
	}
	return out
}

// limit shows a quota field; zero means no limit.
func limit(v int64, format func(int64) string) string {
	if v == 0 {
		return "unlimited"
	}
	return format(v)
}

func count(n int64) string { return strconv.FormatInt(n, 10) }

func humanBytes(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(b)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// leftoversTable lists, per backend, what deletes left for the storage to finish removing.
func leftoversTable(ctx context.Context, w, stderr io.Writer, ctrls map[string]backend.Controller) int {
	names := make([]string, 0, len(ctrls))
	for n := range ctrls {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "BACKEND\tTENANT\tKIND\tNAME\tSTATE")
	code := 0
	for _, n := range names {
		col, ok := ctrls[n].(backend.Collector)
		if !ok {
			continue
		}
		found, err := col.Leftovers(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "shipholdctl leftovers: backend %s: %v\n", n, err)
			code = 1
		}
		for _, l := range found {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.Backend, l.Tenant, l.Kind, l.Name, l.State)
		}
	}
	return code
}
