package rbd

import (
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

func TestResolveOptions(t *testing.T) {
	testCases := []struct {
		name     string
		params   map[string]string
		defFeat  string
		want     classOptions
		wantCode backend.Code
		wantMsg  string
	}{
		{name: "defaults", params: nil, want: classOptions{Pool: "rbd", Features: []string{"layering"}, Mounter: "auto"}},
		{name: "pool override", params: map[string]string{"pool": "fast"}, want: classOptions{Pool: "fast", Features: []string{"layering"}, Mounter: "auto"}},
		{name: "layering added", params: map[string]string{"imageFeatures": "exclusive-lock", "mounter": "rbd-fuse"},
			want: classOptions{Pool: "rbd", Features: []string{"layering", "exclusive-lock"}, Mounter: "rbd-fuse"}},
		{name: "full krbd set", params: map[string]string{"imageFeatures": "layering, exclusive-lock,object-map,fast-diff,deep-flatten", "mounter": "krbd"},
			want: classOptions{Pool: "rbd", Features: []string{"layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten"}, Mounter: "krbd"}},
		{name: "config default features", defFeat: "layering,exclusive-lock", want: classOptions{Pool: "rbd", Features: []string{"layering", "exclusive-lock"}, Mounter: "auto"}},
		{name: "fstype kept", params: map[string]string{backend.ParamFsType: "xfs"}, want: classOptions{Pool: "rbd", Features: []string{"layering"}, Mounter: "auto", FsType: "xfs"}},
		{name: "unknown feature", params: map[string]string{"imageFeatures": "layering,turbo"}, wantCode: backend.InvalidArgument, wantMsg: `"turbo"`},
		{name: "internal feature", params: map[string]string{"imageFeatures": "data-pool"}, wantCode: backend.InvalidArgument, wantMsg: `"data-pool"`},
		{name: "object-map needs exclusive-lock", params: map[string]string{"imageFeatures": "object-map"}, wantCode: backend.InvalidArgument, wantMsg: `needs "exclusive-lock"`},
		{name: "fast-diff needs object-map", params: map[string]string{"imageFeatures": "exclusive-lock,fast-diff"}, wantCode: backend.InvalidArgument, wantMsg: `needs "object-map"`},
		{name: "journaling not on krbd", params: map[string]string{"imageFeatures": "exclusive-lock,journaling", "mounter": "krbd"}, wantCode: backend.InvalidArgument, wantMsg: "kernel client"},
		{name: "journaling not with auto", params: map[string]string{"imageFeatures": "exclusive-lock,journaling"}, wantCode: backend.InvalidArgument, wantMsg: "rbd-nbd or rbd-fuse"},
		{name: "journaling on rbd-nbd", params: map[string]string{"imageFeatures": "exclusive-lock,journaling", "mounter": "rbd-nbd"},
			want: classOptions{Pool: "rbd", Features: []string{"layering", "exclusive-lock", "journaling"}, Mounter: "rbd-nbd"}},
		{name: "bad mounter", params: map[string]string{"mounter": "iscsi"}, wantCode: backend.InvalidArgument, wantMsg: "krbd, rbd-nbd, rbd-fuse or auto"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveOptions(tc.params, "rbd", tc.defFeat, "")
			if tc.wantMsg != "" {
				if err == nil || backend.CodeOf(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want %v mentioning %s", err, tc.wantCode, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Pool != tc.want.Pool || got.Mounter != tc.want.Mounter || got.FsType != tc.want.FsType ||
				strings.Join(got.Features, ",") != strings.Join(tc.want.Features, ",") {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRoundSize(t *testing.T) {
	testCases := []struct {
		name            string
		required, limit int64
		want            int64
		wantErr         bool
	}{
		{"exact MiB", 10 << 20, 0, 10 << 20, false},
		{"one byte over", 10<<20 + 1, 0, 11 << 20, false},
		{"tiny", 1, 0, 1 << 20, false},
		{"zero", 0, 0, 1 << 20, false},
		{"limit allows", 10<<20 + 1, 11 << 20, 11 << 20, false},
		{"limit too tight", 10<<20 + 1, 10<<20 + 100, 0, true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := roundSize(tc.required, tc.limit)
			if tc.wantErr {
				if backend.CodeOf(err) != backend.OutOfRange {
					t.Fatalf("err = %v, want OutOfRange", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestRecordKeepsOldImages: the image record is the shared request record; a record
// written before it (no tenant, parameters omitted when empty) still decodes, and a retry
// of its request is still recognised.
func TestRecordKeepsOldImages(t *testing.T) {
	base := &backend.VolumeRequest{Name: "pvc-1", Tenant: "t", RequiredBytes: 1 << 30,
		Parameters: map[string]string{"backend": "b", "pool": "rbd", backend.ParamPVCName: "data", backend.ParamPVCNamespace: "t"}}
	rec := newRecord("b", base)
	round, err := decodeRecord(rec.encode())
	if err != nil || round.Backend != "b" || round.Tenant != "t" || round.Params["pool"] != "rbd" || round.Params[backend.ParamPVCName] != "" {
		t.Fatalf("round trip: %+v, %v", round, err)
	}
	if err := round.Conflict(base, 1<<30); err != nil {
		t.Fatalf("a retry conflicts: %v", err)
	}
	old, err := decodeRecord(`{"name":"pvc-1","backend":"b","requiredBytes":1073741824,"params":{"backend":"b","pool":"rbd"}}`)
	if err != nil || old.Name != "pvc-1" || old.Backend != "b" || old.Params["pool"] != "rbd" {
		t.Fatalf("old record: %+v, %v", old, err)
	}
	if err := old.Conflict(base, 1<<30); err != nil {
		t.Fatalf("a retry of an old image's request conflicts: %v", err)
	}
	other := *base
	other.Parameters = map[string]string{"backend": "b", "pool": "ssd"}
	if err := old.Conflict(&other, 1<<30); backend.CodeOf(err) != backend.AlreadyExists || !strings.Contains(err.Error(), "parameter pool") {
		t.Fatalf("other pool on an old image: %v", err)
	}
}

func TestNames(t *testing.T) {
	h := volid.Hash("x")
	if volumeHashOf(imageName(h)) != h || snapHashOf(snapName(h)) != h {
		t.Fatal("names do not round-trip")
	}
	for _, n := range []string{"csi-vol-short", "other", "csi-snap-" + h + "0", tmpSnapPrefix + h} {
		if volumeHashOf(n) != "" || snapHashOf(n) != "" {
			t.Fatalf("%q taken for a CSI name", n)
		}
	}
}

func TestMaxAvail(t *testing.T) {
	df := map[string]int64{"rbd": 9876, "x": 1}
	if n, err := maxAvail(df, "rbd"); err != nil || n != 9876 {
		t.Fatalf("got %d %v", n, err)
	}
	if _, err := maxAvail(df, "nope"); backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("missing pool: %v", err)
	}
}

func TestVolumeContext(t *testing.T) {
	ctx := volumeContext("c1", "rbd", "t", "csi-vol-x", classOptions{Features: []string{"layering"}, Mounter: "rbd-fuse", FsType: "xfs"})
	want := map[string]string{CtxClusterID: "c1", CtxPool: "rbd", CtxNamespace: "t", CtxImage: "csi-vol-x", CtxMounter: "rbd-fuse", CtxFsType: "xfs", CtxImageFeatures: "layering"}
	for k, v := range want {
		if ctx[k] != v {
			t.Fatalf("%s = %q, want %q", k, ctx[k], v)
		}
	}
}
