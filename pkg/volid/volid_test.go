package volid

import (
	"errors"
	"strings"
	"testing"
)

func TestVolumeRoundTrip(t *testing.T) {
	v := Volume{Backend: "ceph-rbd", Tenant: "shop-prod", Location: "3", Hash: Hash("pvc-1")}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := ParseVolume(v.String())
	if err != nil {
		t.Fatal(err)
	}
	if got != v {
		t.Fatalf("round trip: got %+v want %+v", got, v)
	}
	s := Snapshot{Volume: v, SnapHash: Hash("snap-1")}
	gs, err := ParseSnapshot(s.String())
	if err != nil || gs != s {
		t.Fatalf("snapshot round trip: %+v %v", gs, err)
	}
}

func TestLongestIDFits(t *testing.T) {
	v := Volume{
		Backend:  strings.Repeat("b", MaxBackendLen),
		Tenant:   strings.Repeat("t", MaxTenantLen),
		Location: strings.Repeat("1", MaxLocationLen),
		Hash:     Hash("x"),
	}
	s := Snapshot{Volume: v, SnapHash: Hash("y")}
	if l := len(s.String()); l > MaxLen {
		t.Fatalf("longest snapshot ID is %d bytes, over %d", l, MaxLen)
	}
	if _, err := ParseSnapshot(s.String()); err != nil {
		t.Fatal(err)
	}
}

func TestParseRejects(t *testing.T) {
	good := Volume{Backend: "b", Tenant: "t", Location: "", Hash: Hash("n")}.String()
	cases := map[string]string{
		"empty":           "",
		"wrong prefix":    "v9:b:t::" + Hash("n"),
		"snapshot as vol": Snapshot{Volume: Volume{Backend: "b", Tenant: "t", Hash: Hash("n")}, SnapHash: Hash("s")}.String(),
		"short hash":      "v1:b:t::abc",
		"upper hash":      "v1:b:t::" + strings.ToUpper(Hash("n")),
		"bad tenant":      "v1:b:T_x::" + Hash("n"),
		"dash tenant":     "v1:b:-t::" + Hash("n"),
		"too many":        good + ":x",
		"too long":        strings.Repeat("v", MaxLen+1),
		"no backend":      "v1::t::" + Hash("n"),
		"bad location":    "v1:b:t:LOC:" + Hash("n"),
	}
	for name, id := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseVolume(id); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseVolume(%q) = %v, want ErrMalformed", id, err)
			}
		})
	}
	if _, err := ParseSnapshot(good); !errors.Is(err, ErrMalformed) {
		t.Fatalf("volume ID parsed as snapshot: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Volume{Backend: "b", Tenant: "t", Location: "1", Hash: Hash("n")}.String())
	f.Add(Snapshot{Volume: Volume{Backend: "b", Tenant: "t", Hash: Hash("n")}, SnapHash: Hash("s")}.String())
	f.Add("v1:::::")
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
