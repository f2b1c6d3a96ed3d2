package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

// TestCheckCommand: exit codes and the one status line through the command's flags.
func TestCheckCommand(t *testing.T) {
	healthy := map[string]backend.Controller{
		"ceph-rbd": storage{kind: "rbd", avail: 5 << 30, vols: []*backend.Volume{vol("ceph-rbd", "shop", "pvc-db", 2<<30)}},
		"isilon":   storage{kind: "isilon", avail: 1 << 40, vols: []*backend.Volume{vol("isilon", "shop", "pvc-media", 7<<30)}},
	}
	down := map[string]backend.Controller{
		"ceph-rbd": healthy["ceph-rbd"],
		"isilon":   storage{kind: "isilon", down: errors.New("https://x: connection refused")},
	}
	testCases := []struct {
		name  string
		ctrls map[string]backend.Controller
		args  []string
		code  int
		want  string
	}{
		{"backends ok", healthy, []string{"backends"}, 0, "SHIPHOLD BACKENDS OK - 2 of 2 backends reachable |"},
		{"backends down", down, []string{"backends"}, 2, "SHIPHOLD BACKENDS CRITICAL - 1 of 2 backends unreachable: isilon (isilon): https://x: connection refused |"},
		{"backends down, warning only", down, []string{"backends", "-w", "0", "-c", "1"}, 1, "SHIPHOLD BACKENDS WARNING - "},
		{"capacity warning", healthy, []string{"capacity", "-w", "10Gi:", "-c", "1Gi:"}, 1, "ceph-rbd 5.0 GiB free (WARNING below 10Gi:)"},
		{"capacity critical", healthy, []string{"capacity", "-w", "10Gi:", "-c", "6Gi:"}, 2, "SHIPHOLD CAPACITY CRITICAL - ceph-rbd 5.0 GiB free (CRITICAL below 6Gi:)"},
		// shop: 9 GiB of its 10 GiB quota, 2 of 3 volumes: 90 %.
		{"tenants default thresholds", healthy, []string{"tenants"}, 1, "SHIPHOLD TENANTS WARNING - shop at 90% of its quota"},
		{"tenants critical", healthy, []string{"tenants", "-c", "85%"}, 2, "'shop'=90%;80;85;0;100"},
		{"exports without an exporting backend", healthy, []string{"exports"}, 0, "SHIPHOLD EXPORTS OK - no configured backend exports volumes"},
		{"bad range", healthy, []string{"tenants", "-w", "lots"}, 3, "SHIPHOLD TENANTS UNKNOWN - -w: threshold \"lots\""},
		{"unknown check", healthy, []string{"disks"}, 3, "SHIPHOLD DISKS UNKNOWN - unknown check \"disks\""},
		{"no check named", healthy, nil, 3, "SHIPHOLD CHECK UNKNOWN - name one check"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := withStorage(t, tc.ctrls)
			var out, errb bytes.Buffer
			code := run(append(append([]string{"check"}, tc.args...), "--config", cfg), &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, want %d; output %q lacks %q (stderr %q)", code, tc.code, out.String(), tc.want, errb.String())
			}
			if strings.Count(out.String(), "\n") != 1 {
				t.Fatalf("not one line: %q", out.String())
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check", "backends", "--config", "/nonexistent.yaml"}, &out, &errb); code != 3 || !strings.HasPrefix(out.String(), "SHIPHOLD BACKENDS UNKNOWN - ") {
		t.Fatalf("missing config: exit %d %q", code, out.String())
	}
}
