package cephfs

import (
	"fmt"
	"testing"

	"github.com/shiphold/shiphold/pkg/ceph"
)

// A listing is answered only at the version it was read at, as a copy, and the listings
// kept stay within their bound, the least recently used dropped first.
func TestDirListingsKeepListingsByVersionWithinTheBound(t *testing.T) {
	l := newDirListings(10)
	v1 := ceph.DirVersion{Ino: 7, Change: 1, BornNs: 5}
	l.put("cephfs", "/volumes/g", v1, []string{"a", "b", "c"})
	got, ok := l.get("cephfs", "/volumes/g", v1)
	if !ok || fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("get at the version read: %v %v, want [a b c]", got, ok)
	}
	got[0] = "changed by the caller"
	if got, _ := l.get("cephfs", "/volumes/g", v1); got[0] != "a" {
		t.Errorf("a caller's change to its listing reached the kept one: %v", got)
	}
	for _, v := range []ceph.DirVersion{
		{Ino: 7, Change: 2, BornNs: 5}, // an entry made or removed since
		{Ino: 8, Change: 1, BornNs: 5}, // another directory under the same path
		{Ino: 7, Change: 1, BornNs: 6}, // made anew (a filesystem made anew)
		{},                             // unknown
	} {
		if got, ok := l.get("cephfs", "/volumes/g", v); ok {
			t.Errorf("get at %+v answered the listing read at %+v: %v", v, v1, got)
		}
	}
	if _, ok := l.get("other", "/volumes/g", v1); ok {
		t.Error("another filesystem's directory answered with the listing of cephfs's")
	}
	l.put("cephfs", "/volumes/unknown", ceph.DirVersion{}, []string{"x"})
	if _, ok := l.get("cephfs", "/volumes/unknown", ceph.DirVersion{}); ok {
		t.Error("a listing without a version was kept")
	}

	// 4 (3 entries and the listing) + 3 + 3 = 10, the bound; using g makes h the oldest.
	vh, vi := ceph.DirVersion{Ino: 9, Change: 1, BornNs: 1}, ceph.DirVersion{Ino: 10, Change: 1, BornNs: 1}
	l.put("cephfs", "/volumes/h", vh, []string{"d", "e"})
	l.get("cephfs", "/volumes/g", v1)
	l.put("cephfs", "/volumes/i", vi, []string{"f", "g"})
	if l.names != 10 {
		t.Errorf("3 listings of 7 entries count %d against the bound, want 10", l.names)
	}
	l.put("cephfs", "/volumes/j", vi, []string{"h"})
	if _, ok := l.get("cephfs", "/volumes/h", vh); ok || l.names > 10 {
		t.Errorf("beyond the bound: the least recently used listing kept: %v, %d entries counted, want dropped and at most 10", ok, l.names)
	}
	if _, ok := l.get("cephfs", "/volumes/g", v1); !ok {
		t.Error("a recently used listing was dropped before the least recently used one")
	}
	// A listing read again replaces the one kept; one larger than the bound is not kept.
	l.put("cephfs", "/volumes/g", ceph.DirVersion{Ino: 7, Change: 3, BornNs: 5}, []string{"a"})
	if _, ok := l.get("cephfs", "/volumes/g", v1); ok {
		t.Error("the listing replaced is still answered")
	}
	l.put("cephfs", "/volumes/big", vh, make([]string, 10))
	if _, ok := l.get("cephfs", "/volumes/big", vh); ok || l.names > 10 {
		t.Errorf("a listing larger than the bound was kept (%d entries counted)", l.names)
	}
}
