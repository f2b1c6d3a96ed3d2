package tenant

import (
	"fmt"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// bookOf makes a book of tenants tenants with perTenant volumes each.
func bookOf(tenants, perTenant int) *book {
	b := newBook()
	for t := 0; t < tenants; t++ {
		for v := 0; v < perTenant; v++ {
			id := volid.Volume{Tenant: fmt.Sprintf("t%d", t), Hash: volid.Hash(fmt.Sprintf("v%d", v))}
			b.put(bookKey(id), entry{tenant: id.Tenant, bytes: 1})
		}
	}
	return b
}

func tenantVolumes(tenant string, n int, bytes int64) []*backend.Volume {
	var out []*backend.Volume
	for v := 0; v < n; v++ {
		out = append(out, &backend.Volume{ID: volid.Volume{Tenant: tenant, Hash: volid.Hash(fmt.Sprintf("v%d", v))}, CapacityBytes: bytes})
	}
	return out
}

// A tenant reading replaces that tenant's entries, and only them.
func TestReplaceTenantTouchesOnlyThatTenant(t *testing.T) {
	b := bookOf(3, 4)
	b.replaceTenant("t1", tenantVolumes("t1", 2, 7))
	if u := b.tally["t1"]; u.Volumes != 2 || u.Bytes != 14 {
		t.Errorf("t1 after its reading: %+v, want 2 volumes of 14 bytes", u)
	}
	for _, other := range []string{"t0", "t2"} {
		if u := b.tally[other]; u.Volumes != 4 || u.Bytes != 4 {
			t.Errorf("%s after t1's reading: %+v, want 4 volumes of 4 bytes", other, u)
		}
	}
	b.replaceTenant("t1", nil)
	if _, ok := b.tally["t1"]; ok || len(b.vols) != 8 {
		t.Errorf("t1 read empty: tally %+v, %d entries left, want 8", b.tally["t1"], len(b.vols))
	}
	b.replaceTenant("t1", tenantVolumes("t1", 3, 1))
	b.remove(bookKey(volid.Volume{Tenant: "t1", Hash: volid.Hash("v0")}))
	b.replaceTenant("t1", tenantVolumes("t1", 1, 5))
	if u := b.tally["t1"]; u.Volumes != 1 || u.Bytes != 5 || len(b.vols) != 9 {
		t.Errorf("t1 after changes and a reading: %+v, %d entries, want 1 volume of 5 bytes, 9 entries", u, len(b.vols))
	}
}

// BenchmarkReplaceTenant reads one tenant of 10 volumes into a book of that tenant alone
// and into a book of 1,000 tenants (issue 15's scale): the two should cost the same, as a
// tenant reading holds the ledger's lock, which every create's quota check takes.
func BenchmarkReplaceTenant(b *testing.B) {
	for _, tenants := range []int{1, 1000} {
		b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
			bk := bookOf(tenants, 10)
			vols := tenantVolumes("t0", 10, 1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bk.replaceTenant("t0", vols)
			}
		})
	}
}
