package manifests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// rbdCapsLine is the documented command that makes the RBD controller's cephx user.
var rbdCapsLine = regexp.MustCompile(`ceph auth get-or-create client\.shiphold-rbd (mon '[^']*' osd '[^']*' mgr '[^']*')`)

// documentedRBDCaps reads the caps from deploy/README.md (Ceph users), which test/publish
// creates its controller user with.
func documentedRBDCaps(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := rbdCapsLine.FindSubmatch(b)
	if m == nil {
		t.Fatal("deploy/README.md has no `ceph auth get-or-create client.shiphold-rbd mon '...' osd '...' mgr '...'` line")
	}
	caps := string(m[1])
	// The auth commands make, check, rotate and remove tenant identities (client.shiphold.*).
	want := []string{"profile rbd", `allow command "mgr dump"`, "mgr 'profile rbd"}
	for _, cmd := range []string{"auth get", "auth get-or-create", "auth caps", "auth rm"} {
		want = append(want, `allow command "`+cmd+`" with entity prefix client.shiphold.`)
	}
	for _, want := range want {
		if !strings.Contains(caps, want) {
			t.Errorf("documented RBD controller caps %q lack %q", caps, want)
		}
	}
	return caps
}

// The Secret templates of deploy/kubernetes and the chart's values say the same caps as
// deploy/README.md, and helm install prints them for every rbd backend with its pool.
func TestRBDControllerCapsAgree(t *testing.T) {
	caps := documentedRBDCaps(t)
	for _, f := range []string{filepath.Join(plainDir, "secrets.yaml"), filepath.Join(chartDir, "values.yaml")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := rbdCapsLine.FindSubmatch(b)
		if m == nil || string(m[1]) != caps {
			t.Errorf("%s: RBD controller caps %q, deploy/README.md says %q", f, m, caps)
		}
	}
	notes, err := RenderNotes(chartDir, releaseName, namespace, map[string]any{
		"config": map[string]any{"backends": []any{
			map[string]any{"name": "fast", "kind": "rbd", "rbd": map[string]any{"pool": "ssd", "credentials": map[string]any{"userID": "csi-fast"}}},
			map[string]any{"name": "files", "kind": "cephfs"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "backend fast (client.csi-fast): " + strings.ReplaceAll(caps, "pool=rbd", "pool=ssd")
	if !strings.Contains(notes, want) {
		t.Errorf("install notes lack %q:\n%s", want, notes)
	}
	if strings.Contains(notes, "backend files") {
		t.Errorf("install notes give a cephfs backend RBD caps:\n%s", notes)
	}
}
