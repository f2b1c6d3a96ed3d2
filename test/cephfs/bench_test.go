package cephfstest

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
)

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// TestCephFSRealBench compares CreateVolume+DeleteVolume through the backend with raw
// go-ceph subvolume create/remove. Run with SHIPHOLD_BENCH=1.
func TestCephFSRealBench(t *testing.T) {
	if os.Getenv("SHIPHOLD_BENCH") != "1" {
		t.Skip("set SHIPHOLD_BENCH=1")
	}
	e := needCeph(t)
	ctx := context.Background()
	cred, _ := ceph.CredentialsFor(e.cfg.CephFS.Credentials, nil)
	conn, err := e.conns.Conn(ctx, e.cfg.Name, e.cfg.CephFS.CephCluster, cred)
	if err != nil {
		t.Fatal(err)
	}
	fsa := admin.NewFromConn(conn)
	rawGroup := e.cfg.CephFS.SubvolumeGroupPrefix + "raw"
	if err := fsa.CreateSubVolumeGroup(fsName, rawGroup, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fsa.RemoveSubVolumeGroup(fsName, rawGroup)
		fsa.RemoveSubVolumeGroup(fsName, e.cfg.CephFS.SubvolumeGroupPrefix+"bench")
	})

	ours := func(i int, tag string) error {
		req := &backend.VolumeRequest{Name: fmt.Sprintf("bench-%s-%d", tag, i), Tenant: "bench", RequiredBytes: 1 << 30}
		v, err := e.ctrl.CreateVolume(ctx, req)
		if err != nil {
			return err
		}
		return e.ctrl.DeleteVolume(ctx, v.ID, nil)
	}
	raw := func(i int, tag string) error {
		name := fmt.Sprintf("raw-%s-%d", tag, i)
		if err := fsa.CreateSubVolume(fsName, rawGroup, name, &admin.SubVolumeOptions{Size: 1 << 30}); err != nil {
			return err
		}
		return fsa.RemoveSubVolume(fsName, rawGroup, name)
	}
	const serial = 40
	ours(-1, "warm")
	var lat, rawLat []time.Duration
	for i := 0; i < serial; i++ {
		s := time.Now()
		if err := ours(i, "s"); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(s))
		s = time.Now()
		if err := raw(i, "s"); err != nil {
			t.Fatal(err)
		}
		rawLat = append(rawLat, time.Since(s))
	}
	fmt.Printf("bench cephfs serial: p50=%s p99=%s raw_p50=%s ratio=%.2f\n", ms(pct(lat, .5)), ms(pct(lat, .99)), ms(pct(rawLat, .5)),
		float64(pct(lat, .5))/float64(pct(rawLat, .5)))

	burst := func(fn func(int, string) error) (float64, int) {
		const n, par = 128, 32
		var wg sync.WaitGroup
		var mu sync.Mutex
		errs := 0
		sem := make(chan struct{}, par)
		start := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				if err := fn(i, "b"); err != nil {
					mu.Lock()
					errs++
					mu.Unlock()
					t.Logf("burst: %v", err)
				}
			}(i)
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds(), errs
	}
	ov, oerr := burst(ours)
	rv, rerr := burst(raw)
	fmt.Printf("bench cephfs burst32: volumes/s=%.1f raw_volumes/s=%.1f ratio=%.2f errors=%d\n", ov, rv, ov/rv, oerr+rerr)
}
