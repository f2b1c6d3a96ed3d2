package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadCephConf: the one ceph.conf reader of the suite takes the fsid and the v1 monitors
// from what micro-ceph.sh writes, and from the other spellings Ceph accepts.
func TestReadCephConf(t *testing.T) {
	cases := []struct {
		name, conf string
		mons       []string
	}{
		{"micro-ceph", "[global]\nfsid = f1\nmon host = [v2:127.0.0.101:3300,v1:127.0.0.101:6789]\n", []string{"127.0.0.101:6789"}},
		{"mon_host, two monitors", "fsid=f1\nmon_host = [v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:10.0.0.2:3300,v1:10.0.0.2:6789]\n", []string{"10.0.0.1:6789", "10.0.0.2:6789"}},
		{"plain addresses", "fsid = f1\nmon host = 10.0.0.1:6789, 10.0.0.2:6789\n", []string{"10.0.0.1:6789", "10.0.0.2:6789"}},
		{"v2 only", "fsid = f1\nmon host = [v2:10.0.0.1:3300]\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ceph.conf")
			if err := os.WriteFile(p, []byte(c.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			fsid, mons := readCephConf(p)
			if fsid != "f1" || !slices.Equal(mons, c.mons) {
				t.Errorf("got fsid %q monitors %v, want f1 %v", fsid, mons, c.mons)
			}
		})
	}
	if fsid, mons := readCephConf(filepath.Join(t.TempDir(), "absent")); fsid != "" || mons != nil {
		t.Errorf("absent file: %q %v", fsid, mons)
	}
}

// TestCephDir: SHIPHOLD_CEPH_DIR wins, then the directory of CEPH_CONF, then the default.
func TestCephDir(t *testing.T) {
	t.Setenv("SHIPHOLD_CEPH_DIR", "")
	t.Setenv("CEPH_CONF", "")
	if d := CephDir(); d != "/tmp/shiphold-ceph" {
		t.Errorf("default %q", d)
	}
	t.Setenv("CEPH_CONF", "/tmp/ceph-x/ceph.conf")
	if d := CephDir(); d != "/tmp/ceph-x" {
		t.Errorf("from CEPH_CONF: %q", d)
	}
	t.Setenv("SHIPHOLD_CEPH_DIR", "/tmp/ceph-y")
	if d, c := CephDir(), CephConf(); d != "/tmp/ceph-y" || c != "/tmp/ceph-y/ceph.conf" {
		t.Errorf("SHIPHOLD_CEPH_DIR: %q %q", d, c)
	}
}

// TestRequireFailsUnderRequireStack: the switch turns a skip into a failure that carries the
// hint. Run in a child test process, since a failing Require ends the test it is called in.
func TestRequireFailsUnderRequireStack(t *testing.T) {
	if os.Getenv("HARNESS_REQUIRE_CHILD") == "1" {
		Require(t, "a thing", false, "get it with make thing")
		return
	}
	for _, stack := range []string{"", "1"} {
		out, err := childTest(t, "TestRequireFailsUnderRequireStack", "HARNESS_REQUIRE_CHILD=1", "SHIPHOLD_REQUIRE_STACK="+stack)
		switch {
		case stack == "" && (err != nil || !contains(out, "--- SKIP", "a thing is not available: get it with make thing")):
			t.Errorf("without the switch: want a skip naming the hint, got %v:\n%s", err, out)
		case stack == "1" && (err == nil || !contains(out, "--- FAIL", "a thing is not available: get it with make thing", "SHIPHOLD_REQUIRE_STACK=1")):
			t.Errorf("with SHIPHOLD_REQUIRE_STACK=1: want a failure naming the hint, got %v:\n%s", err, out)
		}
	}
}

func childTest(t *testing.T, name string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
