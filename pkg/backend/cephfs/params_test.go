package cephfs

import (
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
)

func TestParseParams(t *testing.T) {
	cfg := &config.CephFS{FSName: "cephfs"}
	cases := []struct {
		name    string
		params  map[string]string
		want    volumeParams
		badName string
	}{
		{"defaults", nil, volumeParams{FSName: "cephfs", Mounter: MounterAuto}, ""},
		{"override", map[string]string{ParamFSName: "fs2", ParamMounter: "fuse", ParamFuseMountOptions: "client_cache_size=1000"},
			volumeParams{FSName: "fs2", Mounter: "fuse", FuseMountOptions: "client_cache_size=1000"}, ""},
		{"kernel options", map[string]string{ParamKernelMountOptions: "noatime,recover_session=clean"},
			volumeParams{FSName: "cephfs", Mounter: MounterAuto, KernelMountOptions: "noatime,recover_session=clean"}, ""},
		{"bad mounter", map[string]string{ParamMounter: "nfs"}, volumeParams{}, ParamMounter},
		{"bad fs", map[string]string{ParamFSName: "a b"}, volumeParams{}, ParamFSName},
		{"secret in kernel options", map[string]string{ParamKernelMountOptions: "secret=abc"}, volumeParams{}, ParamKernelMountOptions},
		{"space in options", map[string]string{ParamKernelMountOptions: "a b"}, volumeParams{}, ParamKernelMountOptions},
		{"reserved fuse option", map[string]string{ParamFuseMountOptions: "client_mountpoint=/"}, volumeParams{}, ParamFuseMountOptions},
		{"fuse flag without value", map[string]string{ParamFuseMountOptions: "debug"}, volumeParams{}, ParamFuseMountOptions},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseParams(tc.params, cfg)
			if tc.badName != "" {
				if backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), tc.badName) {
					t.Fatalf("got %v, want InvalidArgument naming %s", err, tc.badName)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestNaming(t *testing.T) {
	if tnt, ok := tenantOfGroup("shiphold-", "shiphold-team-a"); !ok || tnt != "team-a" {
		t.Fatal(tnt, ok)
	}
	if _, ok := tenantOfGroup("shiphold-", "_nogroup"); ok {
		t.Fatal("foreign group accepted")
	}
	if h, ok := hashOf(subvolumePrefix, "csi-vol-0123456789abcdef"); !ok || h != "0123456789abcdef" {
		t.Fatal(h, ok)
	}
	for _, bad := range []string{"csi-vol-xyz", "csi-snap-0123456789abcdef", "csi-vol-0123456789ABCDEF"} {
		if _, ok := hashOf(subvolumePrefix, bad); ok {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestRecordRoundTripAndConflict(t *testing.T) {
	p := volumeParams{FSName: "cephfs", Mounter: "auto"}
	r := volumeRecord{Name: "pvc", Bytes: 10, Params: p}
	got, err := decodeRecord(r.encode())
	if err != nil || got != r {
		t.Fatalf("%+v %v", got, err)
	}
	req := &backend.VolumeRequest{Name: "pvc", RequiredBytes: 10}
	if why := r.conflict(req, p, ""); why != "" {
		t.Fatalf("same request conflicts: %s", why)
	}
	req.RequiredBytes = 11
	if why := r.conflict(req, p, ""); !strings.Contains(why, "11") {
		t.Fatalf("size change: %q", why)
	}
}
