// Command node-driver-registrar registers a CSI driver with the kubelet's plugin watcher: it
// asks the driver its name over the CSI socket, then serves the kubelet plugin registration
// API (k8s.io/kubelet/pkg/apis/pluginregistration/v1) on <plugin-registration-path>/<name>-reg.sock
// and answers GetInfo with the socket path the kubelet must dial.
//
// A stand-in for kubernetes-csi/node-driver-registrar, which the Go module proxy does not
// serve: same flags for what the e2e and deploy/kubernetes/node.yaml use, same protocol.
// hack/k8s-tools.sh builds it in a module of its own; it is not part of the driver.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

var version = "dev"

type registration struct {
	registerapi.UnimplementedRegistrationServer
	driver   string
	endpoint string
	failed   chan error
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	klog.Infof("kubelet asks: GetInfo -> %s at %s", r.driver, r.endpoint)
	return &registerapi.PluginInfo{
		Type: registerapi.CSIPlugin, Name: r.driver, Endpoint: r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if !st.PluginRegistered {
		// As upstream: exit, so the container restarts and registration is tried afresh.
		r.failed <- fmt.Errorf("the kubelet refused the registration of %s: %s", r.driver, st.Error)
	} else {
		klog.Infof("kubelet registered %s", r.driver)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

func main() {
	klog.InitFlags(nil)
	csiAddress := flag.String("csi-address", "/run/csi/socket", "the CSI driver's socket in this container")
	kubeletPath := flag.String("kubelet-registration-path", "", "the CSI driver's socket as the kubelet sees it (on the host)")
	regDir := flag.String("plugin-registration-path", "/registration", "the kubelet's plugin registration directory")
	timeout := flag.Duration("timeout", time.Second, "timeout of each CSI call")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(os.Args[0], version)
		return
	}
	if *kubeletPath == "" {
		klog.Fatal("--kubelet-registration-path is required")
	}
	if err := run(*csiAddress, *kubeletPath, *regDir, *timeout); err != nil {
		klog.Error(err)
		os.Exit(1)
	}
}

func run(csiAddress, kubeletPath, regDir string, timeout time.Duration) error {
	name, err := driverName(csiAddress, timeout)
	if err != nil {
		return err
	}
	sock := filepath.Join(regDir, name+"-reg.sock")
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	defer os.Remove(sock)
	r := &registration{driver: name, endpoint: kubeletPath, failed: make(chan error, 1)}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, r)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	klog.Infof("node-driver-registrar %s: %s registers at %s (driver socket %s)", version, name, sock, kubeletPath)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		klog.Infof("%s: removing %s", s, sock)
		srv.Stop()
		return nil
	case err := <-r.failed:
		srv.Stop()
		return err
	case err := <-served:
		return err
	}
}

// driverName asks the driver on csiAddress for its name, retrying until it answers.
func driverName(csiAddress string, timeout time.Duration) (string, error) {
	target := csiAddress
	if !strings.HasPrefix(target, "unix://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		info, err := csi.NewIdentityClient(conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
		cancel()
		if err == nil {
			return info.GetName(), nil
		}
		klog.Infof("waiting for the CSI driver at %s: %v", csiAddress, err)
		time.Sleep(time.Second)
	}
}
