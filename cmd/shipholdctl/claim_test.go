package main

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/registry"
)

// TestClaimDefaultsByKind pins what an imported volume's claim gets when the flags leave it
// open: a single-node kind (rbd) ReadWriteOnce and, as a filesystem, ext4; a shared
// filesystem ReadWriteMany and no fsType; a raw block claim no fsType.
func TestClaimDefaultsByKind(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		block  bool
		mode   corev1.PersistentVolumeAccessMode
		fsType string
	}{
		{"rbd", false, corev1.ReadWriteOnce, "ext4"},
		{"rbd", true, corev1.ReadWriteOnce, ""},
		{"cephfs", false, corev1.ReadWriteMany, ""},
		{"isilon", false, corev1.ReadWriteMany, ""},
	} {
		f := &importFlags{block: tc.block, policy: "Retain"}
		c, err := f.claim(claimKind(tc.kind), "pool/ns/img")
		if err != nil {
			t.Fatal(err)
		}
		if c.AccessMode != tc.mode || c.FsType != tc.fsType {
			t.Errorf("%s block=%v: access mode %s, fsType %q; want %s, %q", tc.kind, tc.block, c.AccessMode, c.FsType, tc.mode, tc.fsType)
		}
	}
}

func claimKind(kind string) backend.Capabilities { return registry.Kinds()[kind] }

// TestImportNotesTheTenantIdentityByKind pins which kinds' imports warn that the node needs
// a node-stage secret: those whose nodes mount with the tenant's own Ceph identity.
func TestImportNotesTheTenantIdentityByKind(t *testing.T) {
	for kind, notes := range map[string]bool{"rbd": true, "cephfs": true, "isilon": false} {
		var asked []backend.AdoptRequest
		cfg := withStorage(t, map[string]backend.Controller{"ceph-rbd": adopting{storage: storage{kind: kind}, asked: &asked}})
		var out, errb bytes.Buffer
		if code := run([]string{"import", "--config", cfg, "--backend", "ceph-rbd", "--tenant", "shop", "obj"}, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d: %s", kind, code, errb.String())
		}
		if got := strings.Contains(errb.String(), "--node-stage-secret"); got != notes {
			t.Errorf("%s: note about --node-stage-secret %v, want %v:\n%s", kind, got, notes, errb.String())
		}
	}
}
