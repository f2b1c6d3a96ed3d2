package rbdtest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/test/harness"
)

// TestRBDRealOutageMonStopped freezes the monitor (SIGSTOP) under a live controller: every
// request must end within its deadline, those that need the monitor as UNAVAILABLE (or a
// deadline error) naming the monitors, and the same controller must serve again once the
// monitor is back, without a restart. It runs on a private cluster of its own
// (harness.StartPrivateCeph), so the freeze cannot touch the cluster other packages share.
func TestRBDRealOutageMonStopped(t *testing.T) {
	pc := harness.StartPrivateCeph(t)
	c := clusterFor(pc.Conf, pc.Cluster)
	ctl, _ := c.controller(t)
	const tenant = "outage"
	ctx := ctxT(t, 2*time.Minute)
	warm, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "warm", Tenant: tenant, RequiredBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.DeleteVolume(context.Background(), warm.ID, nil)

	// A second cephx user, so that one call during the outage needs a new connection.
	keyOut, err := exec.Command("ceph", "-c", c.conf, "auth", "get-or-create-key", "client.shiphold-outage",
		"mon", "profile rbd", "osd", "profile rbd pool=rbd").Output()
	if err != nil {
		t.Fatalf("create cephx user: %v", err)
	}
	newKey := strings.TrimSpace(string(keyOut))
	monitor := pc.Cluster.Monitors[0]
	resume := pc.Freeze(t, harness.DaemonMon) // the cluster's cleanup resumes it even when the test fails

	const deadline = 3 * time.Second
	calls := []struct {
		name string
		// needsMon calls cannot succeed without the monitor; the others may, from the
		// connection's cached maps and the OSD.
		needsMon bool
		fn       func(ctx context.Context) error
	}{
		{"CreateVolume", false, func(ctx context.Context) error {
			_, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "during-outage", Tenant: tenant, RequiredBytes: 1 << 20})
			return err
		}},
		{"GetVolume", false, func(ctx context.Context) error { _, err := ctl.GetVolume(ctx, warm.ID, nil); return err }},
		{"Capacity", true, func(ctx context.Context) error { _, err := ctl.Capacity(ctx, nil); return err }},
		{"Probe", true, func(ctx context.Context) error { return ctl.Probe(ctx) }},
		{"CreateVolume with new credentials", true, func(ctx context.Context) error {
			_, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "new-conn", Tenant: tenant, RequiredBytes: 1 << 20,
				Secrets: map[string]string{"userID": "shiphold-outage", "userKey": newKey}})
			return err
		}},
	}
	for _, call := range calls {
		rctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		err := call.fn(rctx)
		took := time.Since(start)
		cancel()
		if took > deadline+500*time.Millisecond {
			t.Errorf("%s took %v, deadline %v", call.name, took, deadline)
		}
		if err == nil {
			if call.needsMon {
				t.Errorf("%s succeeded with the monitor stopped", call.name)
			}
			t.Logf("%s during outage: served in %v without the monitor", call.name, took.Round(time.Millisecond))
			continue
		}
		code := backend.CodeOf(err)
		if code != backend.Unavailable && !strings.Contains(err.Error(), "deadline") {
			t.Errorf("%s: %v (%v), want UNAVAILABLE or a deadline", call.name, code, err)
		}
		if !strings.Contains(err.Error(), monitor) {
			t.Errorf("%s error does not name the monitor %s: %v", call.name, monitor, err)
		}
		t.Logf("%s during outage after %v: %v", call.name, took.Round(time.Millisecond), err)
	}

	resume()
	back := time.Now()
	var v *backend.Volume
	for {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err = ctl.CreateVolume(rctx, &backend.VolumeRequest{Name: "during-outage", Tenant: tenant, RequiredBytes: 1 << 20})
		cancel()
		if err == nil || time.Since(back) > 60*time.Second {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("controller does not serve after Ceph is back: %v", err)
	}
	t.Logf("serving again %v after resume", time.Since(back).Round(time.Millisecond))
	if err := ctl.Probe(ctx); err != nil {
		t.Fatalf("probe after outage: %v", err)
	}
	if _, err := ctl.Capacity(ctx, nil); err != nil {
		t.Fatalf("capacity after outage: %v", err)
	}
	if err := ctl.DeleteVolume(ctx, v.ID, nil); err != nil {
		t.Fatal(err)
	}
	// The new-credentials create may have been retried by librados in the background.
	if v2, err := ctl.CreateVolume(ctx, &backend.VolumeRequest{Name: "new-conn", Tenant: tenant, RequiredBytes: 1 << 20}); err == nil {
		ctl.DeleteVolume(ctx, v2.ID, nil)
	}
}
