// Command onefssim runs the OneFS API simulator (package
// github.com/shiphold/shiphold/test/onefssim) as a standalone HTTPS server.
//
//	onefssim --root /tmp/ifs --listen 127.0.0.1:8080 --user admin --password secret \
//	    --ganesha-conf /tmp/shiphold-nfs/exports.conf --ganesha-pidfile /tmp/shiphold-nfs/ganesha.pid
//
// It prints "onefssim listening on <url>" to stdout and serves until SIGINT/SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shiphold/shiphold/test/onefssim"
)

func main() {
	var (
		root       = flag.String("root", "", "directory that stands for /ifs (required)")
		stateDir   = flag.String("state-dir", "", "directory (outside --root) to persist exports, quotas, snapshots and metadata; empty = in memory")
		listen     = flag.String("listen", "127.0.0.1:8080", "listen address")
		user       = flag.String("user", "admin", "API user name")
		password   = flag.String("password", "", "API password (or $ONEFSSIM_PASSWORD; default admin)")
		sessionTTL = flag.Duration("session-timeout", 15*time.Minute, "session inactivity timeout")
		delay      = flag.Duration("delay", 0, "artificial delay per request")
		release    = flag.String("release", "v9.5.0.0", "OneFS release reported by /platform/3/cluster/config")
		gConf      = flag.String("ganesha-conf", "", "file to write ganesha EXPORT blocks to (included by the ganesha main config)")
		gPid       = flag.String("ganesha-pidfile", "", "ganesha.nfsd pid file; the process gets SIGHUP after each exports change")
		quiet      = flag.Bool("quiet", false, "do not log requests")
		pageSize   = flag.Int("page-size", onefssim.DefaultPageSize, "page size of lists asked without a limit")
		copyDelay  = flag.Duration("copy-delay", 0, "artificial delay per file of a namespace copy")
		enforce    = flag.Bool("enforce-hard-quotas", false, "fail writes past hard thresholds (needs --root on btrfs and root)")
	)
	flag.Parse()
	if *root == "" {
		fmt.Fprintln(os.Stderr, "onefssim: --root is required")
		flag.Usage()
		os.Exit(2)
	}
	pw := *password
	if pw == "" {
		pw = os.Getenv("ONEFSSIM_PASSWORD")
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	if *quiet {
		logger = log.New(discard{}, "", 0)
	}
	opts := onefssim.Options{
		Root: *root, StateDir: *stateDir, Listen: *listen, User: *user, Password: pw,
		SessionTimeout: *sessionTTL, Delay: *delay, Release: *release, Logger: logger,
		PageSize: *pageSize, CopyDelay: *copyDelay, EnforceHardQuotas: *enforce,
	}
	if *gConf != "" {
		opts.Ganesha = &onefssim.GaneshaOptions{ExportsFile: *gConf, PidFile: *gPid}
	}
	srv, err := onefssim.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	url, err := srv.Start()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("onefssim listening on %s\n", url)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
	_ = srv.Close()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
