package rbdtest

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// TestRBDRealBench (SHIPHOLD_BENCH=1) times CreateVolume+DeleteVolume through the driver's
// gRPC (in-process, on a unix socket) against raw go-ceph CreateImage+RemoveImage in the same process and namespace.
func TestRBDRealBench(t *testing.T) {
	if os.Getenv("SHIPHOLD_BENCH") != "1" {
		t.Skip("set SHIPHOLD_BENCH=1 to run the rbd benchmark")
	}
	c := needCeph(t)
	ctl, _ := c.controller(t)
	tenant := c.uniqueTenant(t, "bench")
	ctx := ctxT(t, 10*time.Minute)

	conn, err := rados.NewConnWithUser("admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadConfigFile(c.conf); err != nil {
		t.Fatal(err)
	}
	conn.SetConfigOption("keyring", c.keyring)
	if err := conn.Connect(); err != nil {
		t.Fatal(err)
	}
	defer conn.Shutdown()
	io, err := conn.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	// The controller creates the tenant namespace; warm both paths up first.
	warm, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "warm", Tenant: tenant, RequiredBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	io.SetNamespace(tenant)
	opts := librbd.NewRbdImageOptions()
	defer opts.Destroy()
	opts.SetUint64(librbd.ImageOptionFeatures, librbd.FeatureLayering)
	rawOp := func(name string) error {
		if err := librbd.CreateImage(io, name, 1<<30, opts); err != nil {
			return err
		}
		return librbd.RemoveImage(io, name)
	}
	if err := rawOp("raw-warm"); err != nil {
		t.Fatal(err)
	}
	// Through the driver's gRPC (in-process, unix socket), as the external-provisioner calls it.
	cfg := &config.Config{Backends: []config.Backend{*c.backend}}
	csiCtl := harness.StartDriver(t, cfg, driver.ModeController).Controller()
	mountCap := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
	grpcCreate := func(name string) (string, error) {
		resp, err := csiCtl.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, VolumeCapabilities: mountCap,
			Parameters: map[string]string{backend.ParamBackend: c.backend.Name, backend.ParamPVCNamespace: tenant},
		})
		if err != nil {
			return "", err
		}
		return resp.GetVolume().GetVolumeId(), nil
	}
	grpcDelete := func(id string) error {
		_, err := csiCtl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		return err
	}
	ctlOp := func(name string) error {
		id, err := grpcCreate(name)
		if err != nil {
			return err
		}
		return grpcDelete(id)
	}

	const serial = 50
	var lat, raw []time.Duration
	for i := 0; i < serial; i++ {
		start := time.Now()
		if err := ctlOp(fmt.Sprintf("serial-%d", i)); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		start = time.Now()
		if err := rawOp(fmt.Sprintf("raw-%d", i)); err != nil {
			t.Fatal(err)
		}
		raw = append(raw, time.Since(start))
	}
	p50, rawP50 := percentile(lat, 0.5), percentile(raw, 0.5)
	line := fmt.Sprintf("bench rbd serial: p50=%s p99=%s raw_p50=%s ratio=%.2f", ms(p50), ms(percentile(lat, 0.99)), ms(rawP50), float64(p50)/float64(rawP50))
	fmt.Println(line)
	t.Log(line)

	const total, conc = 128, 32
	burst := func(create func(i int) error, cleanup func(i int)) (float64, int64) {
		var errs int64
		var wg sync.WaitGroup
		next := int64(-1)
		start := time.Now()
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(atomic.AddInt64(&next, 1))
					if i >= total {
						return
					}
					if err := create(i); err != nil {
						atomic.AddInt64(&errs, 1)
						t.Logf("burst create %d: %v", i, err)
					}
				}
			}()
		}
		wg.Wait()
		rate := float64(total) / time.Since(start).Seconds()
		for i := 0; i < total; i++ {
			cleanup(i)
		}
		return rate, errs
	}
	ids := make([]string, total)
	rate, errs := burst(func(i int) error {
		id, err := grpcCreate(fmt.Sprintf("burst-%d", i))
		ids[i] = id
		return err
	}, func(i int) {
		if ids[i] != "" {
			grpcDelete(ids[i])
		}
	})
	rawRate, _ := burst(func(i int) error {
		return librbd.CreateImage(io, fmt.Sprintf("raw-burst-%d", i), 1<<30, opts)
	}, func(i int) { librbd.RemoveImage(io, fmt.Sprintf("raw-burst-%d", i)) })
	line = fmt.Sprintf("bench rbd burst32: volumes/s=%.1f raw_volumes/s=%.1f ratio=%.2f errors=%d", rate, rawRate, rate/rawRate, errs)
	fmt.Println(line)
	t.Log(line)
	ctl.DeleteVolume(context.Background(), warm.ID, nil)
}
