package volid

import (
	"errors"
	"strings"
	"testing"
)

func TestAdoptedRoundTrip(t *testing.T) {
	for _, object := range []string{"/csi-vol-0a1b2c3d-4e5f-6789-abcd-ef0123456789", "legacy/site42", "/ifs/data/sites/shop_42", "csi/csi-vol-1.2"} {
		v, err := Adopted("isilon", "shop", "", object)
		if err != nil {
			t.Fatalf("Adopted(%q): %v", object, err)
		}
		if !strings.HasPrefix(v.String(), "a1:isilon:shop::") || v.Hash != Hash(object) {
			t.Fatalf("Adopted(%q) = %s (hash %s)", object, v, v.Hash)
		}
		got, err := ParseVolume(v.String())
		if err != nil || got != v {
			t.Fatalf("round trip of %s: %+v %v", v, got, err)
		}
		s := Snapshot{Volume: v, SnapHash: Hash("snap")}
		gs, err := ParseSnapshot(s.String())
		if err != nil || gs != s || !strings.HasPrefix(s.String(), "b1:") {
			t.Fatalf("snapshot round trip of %s: %+v %v", s, gs, err)
		}
	}
}

func TestAdoptedRejects(t *testing.T) {
	cases := map[string]string{
		"empty object": "",
		"colon":        "a:b",
		"dot-dot":      "/ifs/../etc",
		"space":        "my site",
		"too long":     "/" + strings.Repeat("x", 120),
		"trailing dot": "x/.",
		"double slash": "a//b",
	}
	for name, object := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Adopted("isilon", "shop", "", object); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Adopted(%q) = %v, want ErrMalformed", object, err)
			}
		})
	}
	// A hash that is not the object's is a forged or corrupted ID.
	v, _ := Adopted("isilon", "shop", "", "/ifs/x")
	v.Hash = Hash("other")
	if err := v.Validate(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("mismatched hash validated: %v", err)
	}
}

// Every adopted volume's snapshots fit the CSI limit too.
func TestAdoptedSnapshotsFit(t *testing.T) {
	for n := 1; n < MaxLen; n++ {
		v, err := Adopted(strings.Repeat("b", MaxBackendLen), strings.Repeat("t", MaxTenantLen), "12345678", strings.Repeat("o", n))
		if err != nil {
			break
		}
		if l := len(Snapshot{Volume: v, SnapHash: Hash("s")}.String()); l > MaxLen {
			t.Fatalf("object of %d bytes accepted, its snapshot ID has %d bytes", n, l)
		}
	}
}

func FuzzParseAdopted(f *testing.F) {
	v, _ := Adopted("b", "t", "1", "/pool-ns/img")
	f.Add(v.String())
	f.Add(Snapshot{Volume: v, SnapHash: Hash("s")}.String())
	f.Add("a1:b:t::x:y")
	f.Fuzz(func(t *testing.T, id string) {
		if v, err := ParseVolume(id); err == nil {
			if v.String() != id || len(id) > MaxLen {
				t.Fatalf("accepted %q but re-encodes as %q", id, v.String())
			}
		}
		if s, err := ParseSnapshot(id); err == nil {
			if s.String() != id || len(id) > MaxLen {
				t.Fatalf("accepted %q but re-encodes as %q", id, s.String())
			}
		}
	})
}
