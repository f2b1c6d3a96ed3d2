package config

import (
	"strings"
	"testing"
)

const good = `
backends:
  - name: ceph-rbd
    kind: rbd
    rbd: {clusterID: abc, monitors: ["127.0.0.1:6789"], pool: rbd, credentials: {userID: admin, keyringFile: /k}}
  - name: ceph-fs
    kind: cephfs
    cephfs: {clusterID: abc, monitors: ["127.0.0.1:6789"], fsName: cephfs}
  - name: isilon
    kind: isilon
    isilon: {endpoint: "https://127.0.0.1:8080", isiPath: /ifs/data/shiphold, nfsServer: 127.0.0.1}
tenants:
  default: {maxVolumes: 10}
  overrides: {big: {maxVolumes: 100, maxBytes: 1000}}
`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := c.Backend("ceph-rbd")
	if !ok || b.RBD.Pool != "rbd" || b.RBD.Monitors[0] != "127.0.0.1:6789" || b.RBD.Credentials.UserID != "admin" {
		t.Fatalf("rbd backend decoded wrong: %+v", b)
	}
	if q := c.Tenants.QuotaFor("big"); q.MaxVolumes != 100 || q.MaxBytes != 1000 {
		t.Fatalf("override quota: %+v", q)
	}
	if q := c.Tenants.QuotaFor("other"); q.MaxVolumes != 10 {
		t.Fatalf("default quota: %+v", q)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown field", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p, poool: x}}]", "poool"},
		{"no backends", "backends: []", "no backends"},
		{"bad name", "backends: [{name: A_B, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}}]", "backend"},
		{"duplicate", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}}, {name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}}]", "twice"},
		{"unknown kind", "backends: [{name: a, kind: nfs, rbd: {clusterID: c, monitors: [m], pool: p}}]", "unknown kind"},
		{"kind mismatch", "backends: [{name: a, kind: cephfs, rbd: {clusterID: c, monitors: [m], pool: p}}]", "needs a cephfs section"},
		{"no pool", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m]}}]", "rbd.pool"},
		{"no monitors", "backends: [{name: a, kind: cephfs, cephfs: {clusterID: c, fsName: f}}]", "monitors"},
		{"isi path", "backends: [{name: a, kind: isilon, isilon: {endpoint: e, isiPath: /data, nfsServer: n}}]", "isiPath"},
		{"isi in flight", "backends: [{name: a, kind: isilon, isilon: {endpoint: e, isiPath: /ifs/d, nfsServer: n, maxRequestsInFlight: -1}}]", "maxRequestsInFlight"},
		{"two sections", "backends: [{name: a, kind: rbd, rbd: {clusterID: c, monitors: [m], pool: p}, cephfs: {clusterID: c, monitors: [m], fsName: f}}]", "exactly one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want mention of %q", err, tc.want)
			}
		})
	}
}
