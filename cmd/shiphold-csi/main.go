// Command shiphold-csi is the shiphold CSI plugin: controller, node, or both in one process.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/pkg/metrics"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/tenant"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// runOptions are the flags beyond the CSI basics.
type runOptions struct {
	slowCall       time.Duration
	surveyInterval time.Duration
	surveyTimeout  time.Duration
	quota          tenant.LedgerOptions
	nodeLabels     string
	daemonCgroup   string
	idleTrim       time.Duration
}

func main() {
	// Logging flags as Kubernetes components have them: --logging-format=text|json, -v,
	// --vmodule, and klog's remaining flags.
	logCfg := logsapi.NewLoggingConfiguration()
	logsapi.AddGoFlags(logCfg, flag.CommandLine)
	logs.AddGoFlags(flag.CommandLine, logs.SkipLoggingConfigurationFlags())
	endpoint := flag.String("endpoint", "unix:///csi/csi.sock", "CSI endpoint (unix:///path or tcp://host:port)")
	nodeID := flag.String("nodeid", "", "node name (required in node and all modes)")
	nodeAddr := flag.String("node-address", "", "address storage sees this node at (NFS export clients); default: the source address toward the first Isilon backend's nfsServer, else $NODE_IP, else the first non-loopback IPv4")
	modeFlag := flag.String("mode", "all", "services to serve: controller, node or all")
	configPath := flag.String("config", "/etc/shiphold/config.yaml", "driver config file")
	name := flag.String("drivername", "shiphold.csi.io", "CSI driver name")
	metricsAddr := flag.String("metrics-address", "", "serve Prometheus metrics on this address (e.g. :9090); empty disables")
	probeInterval := flag.Duration("probe-interval", 30*time.Second, "how often the controller checks backend reachability")
	kubeletDir := flag.String("kubelet-dir", "/var/lib/kubelet", "kubelet root; at start the node plugin repairs the volumes staged below it")
	var ro runOptions
	flag.DurationVar(&ro.slowCall, "slow-call", driver.DefaultSlowCall, "log calls that take longer than this at the default verbosity")
	flag.DurationVar(&ro.surveyInterval, "survey-interval", 5*time.Minute, "how often the controller reads capacity, tenant usage and export clients for the metrics (a scrape never lists storage)")
	flag.DurationVar(&ro.surveyTimeout, "survey-timeout", time.Minute, "bound of each backend's part of one survey")
	flag.DurationVar(&ro.quota.ReadInterval, "quota-read-interval", tenant.DefaultReadInterval, "how often the controller reads each backend's volumes for the tenant quota checks (its own creates, expansions and deletes count at once)")
	flag.DurationVar(&ro.quota.StaleAfter, "quota-stale-after", tenant.DefaultStaleAfter, "past this age of a backend's last reading, creates of tenants with a quota and volumes on it are refused (UNAVAILABLE) until it answers")
	flag.StringVar(&ro.nodeLabels, "node-labels", "", "the node's labels (key=value,...) matched against the backends' topology; default: read from the Node object (only when a backend has a topology)")
	flag.StringVar(&ro.daemonCgroup, "daemon-cgroup", mounter.DefaultDaemonCgroup, "host cgroup (below /sys/fs/cgroup, in every hierarchy) the node plugin starts ceph-fuse, rbd-fuse and rbd-nbd in, so that a restart of its container does not kill pods' mounts; empty keeps them in the plugin's own cgroup")
	flag.DurationVar(&ro.idleTrim, "idle-trim-after", 10*time.Second, "after this long without a call, give memory back: the Go heap's free pages, and the binary's and libraries' pages that starting and earlier calls touched (0 never)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	logs.InitLogs()
	if err := logsapi.ValidateAndApply(logCfg, nil); err != nil {
		fmt.Fprintf(os.Stderr, "shiphold-csi: %v\n", err)
		os.Exit(2)
	}
	defer logs.FlushLogs()

	if *showVersion {
		fmt.Println(version)
		return
	}
	if err := run(*endpoint, *nodeID, *nodeAddr, *modeFlag, *configPath, *name, *metricsAddr, *kubeletDir, *probeInterval, ro); err != nil {
		klog.ErrorS(err, "shiphold-csi stopped")
		logs.FlushLogs()
		os.Exit(1)
	}
}

func run(endpoint, nodeID, nodeAddr, modeFlag, configPath, name, metricsAddr, kubeletDir string, probeInterval time.Duration, ro runOptions) error {
	mode, err := driver.ParseMode(modeFlag)
	if err != nil {
		return err
	}
	if err := ro.quota.Validate(); err != nil {
		return fmt.Errorf("--quota-stale-after, --quota-read-interval: %w", err)
	}
	cfg, err := config.Load(configPath, registry.Sections())
	if err != nil {
		return err
	}
	backends, err := registry.Open(cfg, mode != driver.ModeNode, mode != driver.ModeController)
	if err != nil {
		return err
	}
	defer backends.Close()
	if nodeAddr == "" && mode != driver.ModeController {
		nodeAddr = nodeAddress(cfg)
	}
	if mode != driver.ModeController && ro.daemonCgroup != "" {
		if err := mounter.SetDaemonCgroup(&mounter.DaemonCgroup{Root: "/sys/fs/cgroup", Name: ro.daemonCgroup}); err != nil {
			return fmt.Errorf("%w; or pass --daemon-cgroup= to keep mount daemons in the plugin's cgroup, where a restart kills them", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var labels map[string]string
	if mode != driver.ModeController {
		if labels, err = nodeLabels(ctx, cfg, ro.nodeLabels, nodeID); err != nil {
			return err
		}
	}

	opts := driver.Options{
		Name: name, Version: version, NodeName: nodeID, NodeAddress: nodeAddr, NodeLabels: labels, Config: cfg,
		Controllers: backends.Controllers, Stagers: backends.Stagers, Kinds: registry.Kinds(), ProbeInterval: probeInterval, SlowCall: ro.slowCall,
		Quota: ro.quota,
	}
	if ro.idleTrim > 0 {
		trim := newIdleTrim(ro.idleTrim)
		opts.Interceptors = append(opts.Interceptors, trim.interceptor)
		go trim.run(ctx)
	}
	if metricsAddr != "" {
		reg := prometheus.NewRegistry()
		m := metrics.New(reg)
		opts.Interceptors = append(opts.Interceptors, m.UnaryServerInterceptor(driver.BackendOf))
		opts.OnProbe = func(backendName, kind string, err error) { m.SetBackendReachable(backendName, kind, err == nil) }
		if mode != driver.ModeNode {
			survey := metrics.NewSurvey(reg, backends.Controllers, cfg.Tenants, ro.surveyTimeout)
			go survey.Run(ctx, ro.surveyInterval)
		}
		go func() {
			if err := metrics.Serve(ctx, metricsAddr, reg); err != nil {
				klog.ErrorS(err, "metrics server stopped")
			}
		}()
	}
	d, err := driver.Compose(mode, opts)
	if err != nil {
		return err
	}
	if d.NodeServer != nil {
		// Mounts whose FUSE client died with the previous plugin process come back now,
		// not at the next pod start.
		go func() {
			n := d.RepairStaged(ctx, kubeletDir)
			klog.Infof("checked %d staged volumes below %s", n, kubeletDir)
		}()
	}
	return d.Serve(ctx, endpoint)
}

// nodeAddress is the address a storage-side access list (an Isilon export's clients) must
// name for this node: the one the first backend whose section lists nodes by address gives
// (config.NodeAddressed: the source address of the node's route to the NFS server, which
// the server sees; status.hostIP can be another interface), else $NODE_IP, else the first
// IPv4. With such backends on several networks, pass --node-address.
func nodeAddress(cfg *config.Config) string {
	for _, b := range cfg.Backends {
		sec, ok := b.Section.(config.NodeAddressed)
		if !ok {
			continue
		}
		addr, err := sec.NodeAddress()
		if err != nil {
			klog.Warningf("backend %q: %v; falling back to $NODE_IP", b.Name, err)
			continue
		}
		if addr != "" {
			klog.Infof("node address %s: the source address toward backend %q's storage", addr, b.Name)
			return addr
		}
	}
	if addr := os.Getenv("NODE_IP"); addr != "" {
		return addr
	}
	return firstIPv4()
}

// firstIPv4 is the node's address for storage-side access lists when none is given.
func firstIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
