// Command shipholdctl is shiphold's admin CLI. Its csi family talks CSI to a running plugin,
// the way Kubernetes would, for demos, debugging and scripted operations.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `shipholdctl: shiphold admin CLI

Usage:
  shipholdctl backends [--config FILE]            reachability and free capacity of each backend
  shipholdctl volumes  [--config FILE] [--tenant T] volumes on every backend, per tenant
  shipholdctl tenants  [--config FILE]            usage per tenant against its quota
  shipholdctl check backends|capacity|tenants|exports [-w RANGE] [-c RANGE]   Nagios/Icinga plugin
  shipholdctl csi [--endpoint unix:///path] <command> [flags]

CSI commands (talk to a running shiphold-csi plugin):
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

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	switch args[0] {
	case "csi":
		return runCSI(args[1:], stdout, stderr)
	case "backends", "volumes", "tenants":
		return runAdmin(args[0], args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "shipholdctl: unknown command %q\n\n%s", args[0], usage)
	return 2
}
