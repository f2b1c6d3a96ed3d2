package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/check"
	"github.com/shiphold/shiphold/pkg/config"
)

const checkUsage = `usage: shipholdctl check backends|capacity|tenants|exports [-w RANGE] [-c RANGE] [--config FILE] [--timeout D] [--tenant T]

A Nagios/Icinga plugin: one status line with performance data; exit 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN. RANGE is a Nagios range ([@]start:end, N = 0:N, "start:" = at least
start); numbers take Ki Mi Gi Ti (or k M G T) and %%.
  backends  every backend answers a probe within --timeout; -w/-c count unreachable ones (default -c 0)
  capacity  free bytes per backend; minimum-free ranges, e.g. -w 500Gi: -c 100Gi:
  tenants   usage per tenant in %% of its quota (default -w 80 -c 90); --tenant checks one
  exports   Isilon export clients; -w/-c count stale clients (default -w 0)
`

// runCheck is the check command: every failure to check at all is UNKNOWN, on stdout,
// since the monitoring system reads nothing else.
func runCheck(args []string, stdout, stderr io.Writer) int {
	kind, rest := "", args
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		kind, rest = args[0], args[1:]
	}
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage) }
	warn := fs.String("w", "", "warning range")
	crit := fs.String("c", "", "critical range")
	configPath := fs.String("config", "/etc/shiphold/config.yaml", "the driver's config file")
	timeout := fs.Duration("timeout", check.DefaultProbeTimeout, "bound of each backend's probe or capacity read")
	tenantName := fs.String("tenant", "", "check only this tenant (tenants)")
	name := "check"
	if kind != "" {
		name = kind
	}
	if err := fs.Parse(rest); err != nil {
		return check.Unknownf("%v", err).Write(stdout, name)
	}
	if kind == "" || fs.NArg() > 0 {
		return check.Unknownf("name one check: backends, capacity, tenants or exports").Write(stdout, name)
	}
	th, err := checkThresholds(kind, *warn, *crit)
	if err != nil {
		return check.Unknownf("%v", err).Write(stdout, name)
	}
	cfg, err := config.Load(*configPath, registry.Sections())
	if err != nil {
		return check.Unknownf("%v", err).Write(stdout, name)
	}
	ctrls, closeAll, err := openBackends(cfg)
	if err != nil {
		return check.Unknownf("%v", err).Write(stdout, name)
	}
	defer closeAll()
	// The listing checks get a few probe timeouts: a tenant sum reads every backend.
	ctx, cancel := context.WithTimeout(context.Background(), 3**timeout)
	defer cancel()
	var r check.Result
	switch kind {
	case "backends":
		r = check.Backends(ctx, ctrls, th, *timeout)
	case "capacity":
		r = check.Capacity(ctx, ctrls, th, *timeout)
	case "tenants":
		r = check.Tenants(ctx, ctrls, cfg.Tenants, th, *tenantName)
	case "exports":
		r = check.Exports(ctx, ctrls, th)
	}
	return r.Write(stdout, kind)
}

// checkThresholds parses -w/-c, with each check's defaults for those not given.
func checkThresholds(kind, warn, crit string) (check.Thresholds, error) {
	var def check.Thresholds
	switch kind {
	case "backends":
		def.Crit, _ = check.ParseRange("0")
	case "capacity":
	case "tenants":
		def = check.DefaultTenantThresholds
	case "exports":
		def = check.DefaultExportThresholds
	default:
		return def, fmt.Errorf("unknown check %q: use backends, capacity, tenants or exports", kind)
	}
	th := def
	var err error
	if warn != "" {
		if th.Warn, err = check.ParseRange(warn); err != nil {
			return th, fmt.Errorf("-w: %v", err)
		}
	}
	if crit != "" {
		if th.Crit, err = check.ParseRange(crit); err != nil {
			return th, fmt.Errorf("-c: %v", err)
		}
	}
	return th, nil
}
