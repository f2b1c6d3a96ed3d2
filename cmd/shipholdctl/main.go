// Command shipholdctl is shiphold's admin CLI: the backends, volumes and tenants as the
// storage holds them, migrations between backends, and (csi ...) CSI calls to a running
// plugin. Installed as kubectl-shiphold it is a kubectl plugin: kubectl shiphold ...
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// pluginName is the binary name kubectl looks for to serve "kubectl shiphold".
const pluginName = "kubectl-shiphold"

func main() {
	os.Exit(runAs(filepath.Base(os.Args[0]), os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return runAs("shipholdctl", args, stdout, stderr)
}

// exitError ends a command with a code after the command printed why.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// usageError is a mistake in the command line (exit 2).
type usageError struct{ error }

// runAs runs the CLI under the name it was invoked as.
func runAs(argv0 string, args []string, stdout, stderr io.Writer) int {
	root := newRoot(commandName(argv0), stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "unknown command"), strings.Contains(err.Error(), "flag"),
		strings.Contains(err.Error(), "arg(s)"):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", root.DisplayName(), err, root.DisplayName())
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", root.DisplayName(), err)
	return 1
}

// commandName is how help text names the CLI: "kubectl shiphold" when kubectl runs it.
func commandName(argv0 string) string {
	if strings.TrimSuffix(argv0, ".exe") == pluginName {
		return "kubectl shiphold"
	}
	return "shipholdctl"
}

func newRoot(name string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           strings.TrimPrefix(name, "kubectl "),
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: name},
		Short:         "shiphold admin CLI",
		Long:          "shiphold admin CLI: backends, volumes and tenants as the storage holds them, migrations, and CSI calls to a running plugin.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(adminCommands(stdout, stderr)...)
	root.AddCommand(csiCommand(stdout, stderr), checkCommand(stdout, stderr), migrateCommand(stdout, stderr), gcCommand(stdout, stderr),
		importCommand(stdout, stderr))
	return root
}

// checkCommand keeps the Nagios plugin's own flag parsing (-w RANGE -c RANGE, single dash)
// and its exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
func checkCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:                "check backends|capacity|tenants|exports [-w RANGE] [-c RANGE]",
		Short:              "a Nagios/Icinga plugin: one status line with performance data",
		Long:               strings.ReplaceAll(checkUsage, "%%", "%"),
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := runCheck(args, stdout, stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
}

// csiCommand keeps the csi family's own flag parsing: its global flags come before the
// subcommand (csi --endpoint E create-volume ...).
func csiCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:                "csi [--endpoint unix:///path] [--timeout 2m] COMMAND [flags]",
		Short:              "talk CSI to a running shiphold-csi plugin (create-volume, stage, publish, ...)",
		Long:               csiUsage,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
				fmt.Fprint(stdout, csiUsage)
				return nil
			}
			if code := runCSI(args, stdout, stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
}

const csiUsage = `CSI commands (talk to a running shiphold-csi plugin):
  shipholdctl csi [--endpoint unix:///path] [--timeout 2m] <command> [flags]

  info                       plugin name, version, node ID, capabilities
  create-volume              --name N --backend B [--size 1Gi] [--block] [--namespace NS] [--param k=v]... [--from-snapshot ID | --from-volume ID]
  delete-volume              --volume-id ID
  list-volumes
  expand-volume              --volume-id ID --size 2Gi
  create-snapshot            --name N --volume-id ID
  delete-snapshot            --snapshot-id ID
  list-snapshots             [--volume-id ID]
  publish-controller         --volume-id ID --node-id NODE [--readonly]
  unpublish-controller       --volume-id ID --node-id NODE
  stage                      --volume-id ID (or --volume-file F) --staging-path P [--block] [--fstype ext4] [--context k=v]...
  unstage                    --volume-id ID --staging-path P
  publish                    --volume-id ID --staging-path P --target-path T [--block] [--readonly]
  unpublish                  --volume-id ID --target-path T
  stats                      --volume-id ID --path P
  capacity                   [--backend B]
`
