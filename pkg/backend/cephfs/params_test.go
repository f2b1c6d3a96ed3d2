package cephfs

import (
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

func TestParseParams(t *testing.T) {
	cfg := &Config{FSName: "cephfs"}
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

// TestRecordKeepsOldVolumes: the record carries the shared request record beside the fields
// older versions wrote and read; a record without it (an older volume) is still judged by
// name, size and source.
func TestRecordKeepsOldVolumes(t *testing.T) {
	p := volumeParams{FSName: "cephfs", Mounter: "auto"}
	req := &backend.VolumeRequest{Name: "pvc", Tenant: "t", RequiredBytes: 10, Parameters: map[string]string{ParamMounter: "auto"}}
	rr := backend.NewRequestRecord(req)
	r := volumeRecord{Name: "pvc", Bytes: 10, Params: p, Request: &rr}
	got, err := decodeRecord(r.encode())
	if err != nil || got.Request == nil || got.Name != "pvc" || got.Params != p || got.Request.Params[ParamMounter] != "auto" {
		t.Fatalf("%+v %v", got, err)
	}
	if err := got.request().Conflict(req, 10); err != nil {
		t.Fatalf("same request conflicts: %v", err)
	}
	fuse := *req
	fuse.Parameters = map[string]string{ParamMounter: "fuse"}
	if err := got.request().Conflict(&fuse, 10); backend.CodeOf(err) != backend.AlreadyExists || !strings.Contains(err.Error(), "parameter mounter") {
		t.Fatalf("other mounter: %v", err)
	}
	old, err := decodeRecord(`{"name":"pvc","bytes":10,"params":{"fsName":"cephfs","mounter":"auto"}}`)
	if err != nil || old.Request != nil || old.Params != p {
		t.Fatalf("old record: %+v %v", old, err)
	}
	if err := old.request().Conflict(req, 10); err != nil {
		t.Fatalf("a retry of an old volume's request conflicts: %v", err)
	}
	if err := old.request().Conflict(&backend.VolumeRequest{Name: "pvc", RequiredBytes: 11}, 10); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("a larger size on an old volume: %v", err)
	}
}
