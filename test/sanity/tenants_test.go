package sanity

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/test/harness"
)

// sanityTenants are the tenant names this suite makes up: a failed clone into an absent
// tenant still makes the tenant's (empty) place, as any CreateVolume does.
var sanityTenants = []string{"absent-", "sanity-other"}

func isSanityTenant(name string) bool {
	for _, p := range sanityTenants {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// removeSanityTenants removes the empty RADOS namespaces or subvolume groups of the made-up
// tenants from the local cluster, so runs do not pile them up. Non-empty ones stay (the
// removal fails) and are reported.
func removeSanityTenants(t *testing.T, kind string) {
	conf := filepath.Join(harness.CephDir(), "ceph.conf")
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, append([]string{"-c", conf}, args...)...).CombinedOutput()
		if err != nil {
			t.Logf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	switch kind {
	case "rbd":
		var nss []struct{ Name string }
		json.Unmarshal([]byte(run("rbd", "namespace", "ls", "rbd", "--format", "json")), &nss)
		for _, ns := range nss {
			if isSanityTenant(ns.Name) {
				run("rbd", "namespace", "rm", "rbd/"+ns.Name)
			}
		}
	case "cephfs":
		var groups []struct{ Name string }
		json.Unmarshal([]byte(run("ceph", "fs", "subvolumegroup", "ls", "cephfs", "--format", "json")), &groups)
		for _, g := range groups {
			if tenant, ok := strings.CutPrefix(g.Name, "shiphold-"); ok && isSanityTenant(tenant) {
				run("ceph", "fs", "subvolumegroup", "rm", "cephfs", g.Name)
			}
		}
	}
	// Their cephx identities (client.shiphold.<backend>.<tenant>), made with their places.
	var auth struct {
		AuthDump []struct{ Entity string } `json:"auth_dump"`
	}
	json.Unmarshal([]byte(run("ceph", "auth", "ls", "--format", "json")), &auth)
	for _, e := range auth.AuthDump {
		tenant := e.Entity[strings.LastIndex(e.Entity, ".")+1:]
		if strings.HasPrefix(e.Entity, "client.shiphold.") && isSanityTenant(tenant) {
			run("ceph", "auth", "rm", e.Entity)
		}
	}
}
