package isilon

import (
	"context"
	"slices"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// A tenant directory cannot be listed by others (issue 13): made 0711, and one an older
// version made 0755 is closed on the first create of this process.
func TestTenantDirectoryIsPrivate(t *testing.T) {
	for _, existing := range []bool{false, true} {
		c, f, _ := testController(t)
		if existing {
			f.dirs["/ifs/data/sh/shop"], f.modes["/ifs/data/sh/shop"] = map[string]string{}, "0755"
		}
		if _, err := c.CreateVolume(context.Background(), req("pvc-1", 100)); err != nil {
			t.Fatal(err)
		}
		if got := f.modes["/ifs/data/sh/shop"]; got != "0711" {
			t.Errorf("existing=%v: tenant directory mode %q, want 0711", existing, got)
		}
		if got := f.modes["/ifs/data/sh/shop/csi-vol-"+volid.Hash("pvc-1")]; got != volumeMode {
			t.Errorf("existing=%v: volume directory mode %q, want %s", existing, got, volumeMode)
		}
	}
}

// Every export squashes root (issue 13): a new one, and one an older version made that
// inherited its zone's default, at the next publish; a class with rootClientEnabled gets
// the node in root_clients instead, and a default class does not.
func TestExportSquashesRoot(t *testing.T) {
	ctx := context.Background()
	node := backend.Node{Name: "n1", Address: "10.0.0.1"}
	for _, tc := range []struct {
		name     string
		old      bool // the export predates map_root
		root     string
		wantRoot []string
	}{
		{name: "new export, default class"},
		{name: "old export, default class", old: true},
		{name: "old export, root class", old: true, root: "true", wantRoot: []string{"10.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, f, _ := testController(t)
			r := req("pvc-1", 100)
			if tc.root != "" {
				r.Parameters = map[string]string{ParamRootClientEnabled: tc.root}
			}
			v, err := c.CreateVolume(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			var e *Export
			for _, x := range f.exports {
				e = x
			}
			if e == nil || !e.SquashesRoot {
				t.Fatalf("new export %+v does not squash root", e)
			}
			if tc.old {
				e.SquashesRoot = false
			}
			if _, err := c.PublishVolume(ctx, v.ID, node, backend.PublishAccess{}, v.Context, goodSecrets); err != nil {
				t.Fatal(err)
			}
			if !e.SquashesRoot && !f.exports[e.ID].SquashesRoot {
				t.Errorf("export %d still maps root to root after publish", e.ID)
			}
			if got := orEmpty(f.exports[e.ID].RootClients); !slices.Equal(got, orEmpty(tc.wantRoot)) {
				t.Errorf("root_clients %v, want %v", got, tc.wantRoot)
			}
		})
	}
}
