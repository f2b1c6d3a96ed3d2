// Command shiphold-k8s-up starts the test/e2e/k8s control plane for manual work and keeps it
// up until interrupted, then stops every process it started:
//
//	go run ./test/e2e/k8s/cmd/shiphold-k8s-up --csi-address /tmp/shiphold/csi.sock
//	export KUBECONFIG=...   (printed on start)
//
// Build the tools first: hack/k8s-tools.sh build.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shiphold/shiphold/test/e2e/k8s"
)

func main() {
	var opts k8s.Options
	var sidecars, apply string
	flag.StringVar(&opts.CSIAddress, "csi-address", "", "CSI unix socket for the controller sidecars (empty: no sidecars)")
	flag.StringVar(&sidecars, "sidecars", strings.Join(k8s.AllSidecars, ","), "sidecars to start with --csi-address")
	flag.StringVar(&opts.WorkDir, "workdir", "", "work directory (default: a temporary one, removed on exit)")
	flag.BoolVar(&opts.KeepWorkDir, "keep", false, "keep the temporary work directory on exit")
	flag.BoolVar(&opts.SkipSnapshots, "no-snapshots", false, "skip the snapshot CRDs and snapshot-controller")
	flag.StringVar(&opts.RepoRoot, "repo", "", "repository root (default: found from the working directory)")
	flag.StringVar(&apply, "apply", "", "a kustomize directory to apply once up, e.g. deploy/kubernetes")
	flag.Parse()
	if sidecars != "" {
		opts.Sidecars = strings.Split(sidecars, ",")
	}
	opts.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := k8s.Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shiphold-k8s-up:", err)
		os.Exit(1)
	}
	code := 0
	if apply != "" {
		if out, err := c.Kubectl(ctx, "apply", "--validate=strict", "-k", apply); err != nil {
			fmt.Fprintln(os.Stderr, "shiphold-k8s-up:", err)
			code = 1
		} else {
			fmt.Fprint(os.Stderr, string(out))
		}
	}
	if code == 0 {
		fmt.Printf("export KUBECONFIG=%s\n# API server %s, logs in %s/logs; Ctrl-C stops everything\n", c.Kubeconfig, c.Server, c.Dir)
		<-ctx.Done()
	}
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "shiphold-k8s-up: stop:", err)
		code = 1
	}
	os.Exit(code)
}
