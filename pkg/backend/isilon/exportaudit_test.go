package isilon

import (
	"context"
	"slices"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

// RemoveExportClient takes one address off the export and off the grant that named it,
// keeps the placeholder and every other client, and is a no-op the second time.
func TestRemoveExportClient(t *testing.T) {
	c, f, _ := testController(t)
	ctx := context.Background()
	v, err := c.CreateVolume(ctx, req("pvc-1", 100))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []backend.Node{{Name: "n1", Address: "10.0.0.1"}, {Name: "n2", Address: "10.0.0.2"}} {
		if _, err := c.PublishVolume(ctx, v.ID, n, backend.PublishAccess{}, v.Context, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := c.RemoveExportClient(ctx, v.ID, "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	dir, _ := c.VolumeDir(v.ID)
	e, _ := f.ExportOf(ctx, "System", dir)
	if got := allClients(*e); !slices.Equal(got, []string{"10.0.0.2"}) || !slices.Contains(e.ReadOnlyClients, NoAccessClient) {
		t.Fatalf("export after removal: %+v", e)
	}
	attrs, _ := f.Attrs(ctx, dir)
	all := grants(attrs)
	if all["n1"] != nil || all["n2"] == nil {
		t.Fatalf("grants after removal: %v", all)
	}
	audit, err := c.ExportClients(ctx)
	if err != nil || len(audit) != 1 || len(audit[0].Stale) != 0 {
		t.Fatalf("audit after removal: %+v, %v", audit, err)
	}
}
