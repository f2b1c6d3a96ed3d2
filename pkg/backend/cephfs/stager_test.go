package cephfs

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/volid"
)

func newFakeStager(t *testing.T, kernel bool) (*Stager, *mounter.FakeExec) {
	m, _, fe := mounter.NewFake()
	cfg := &Config{Cluster: ceph.Cluster{ClusterID: "c", Monitors: []string{"10.0.0.1:6789"}}, FSName: "cephfs"}
	s := newStager("fs1", cfg, m)
	s.kernelCeph = func() bool { return kernel }
	s.fuseProcs = func(string) []mounter.Daemon { return nil }
	s.exitWait = time.Second
	return s, fe
}

var testVol = volid.Volume{Backend: "fs1", Tenant: "t", Location: "1", Hash: "0123456789abcdef"}

func stageReq(staging string, vc map[string]string) *backend.StageRequest {
	return &backend.StageRequest{ID: testVol, StagingPath: staging, Context: vc,
		Secrets: map[string]string{"userID": "u1", "userKey": "QUJD"}}
}

func TestChooseMounter(t *testing.T) {
	cases := []struct {
		want   string
		kernel bool
		got    string
		fail   bool
	}{
		{"auto", true, MounterKernel, false}, {"auto", false, MounterFuse, false}, {"", false, MounterFuse, false},
		{"fuse", true, MounterFuse, false}, {"kernel", true, MounterKernel, false}, {"kernel", false, "", true}, {"nfs", true, "", true},
	}
	for _, tc := range cases {
		s, _ := newFakeStager(t, tc.kernel)
		got, err := s.chooseMounter(tc.want)
		if (err != nil) != tc.fail || got != tc.got {
			t.Errorf("chooseMounter(%q, kernel=%v) = %q, %v", tc.want, tc.kernel, got, err)
		}
	}
}

func TestStageFuseCommandAndRecord(t *testing.T) {
	s, fe := newFakeStager(t, false)
	staging := t.TempDir()
	vc := map[string]string{CtxFSName: "cephfs", CtxRootPath: "/volumes/g/s/uuid", CtxMounter: "auto", CtxFuseMountOptions: "client_cache_size=10"}
	if err := s.StageVolume(context.Background(), stageReq(staging, vc)); err != nil {
		t.Fatal(err)
	}
	cmds := fe.Commands()
	if len(cmds) != 1 || !strings.HasPrefix(cmds[0], "ceph-fuse "+filepath.Join(staging, "fs")) {
		t.Fatalf("commands %v", cmds)
	}
	for _, want := range []string{"--id u1", "--keyfile " + staging, "-m 10.0.0.1:6789", "--client_fs=cephfs", "--client_mountpoint=/volumes/g/s/uuid", "--client_quota=true", "--client_cache_size=10", "-c /dev/null"} {
		if !strings.Contains(cmds[0], want) {
			t.Errorf("ceph-fuse command lacks %q: %s", want, cmds[0])
		}
	}
	if strings.Contains(cmds[0], "QUJD") {
		t.Fatal("secret on the command line")
	}
	rec, err := readRecord(staging)
	if err != nil || rec == nil || rec.Mounter != MounterFuse || rec.Path != "/volumes/g/s/uuid" {
		t.Fatalf("record %+v %v", rec, err)
	}
	if rec.KeyFile != "" || len(keyFiles(staging)) != 0 {
		t.Fatalf("key at rest: record %q, files %v", rec.KeyFile, keyFiles(staging))
	}
	src, block, err := s.PublishSource(context.Background(), testVol, staging)
	if err != nil || block || src != filepath.Join(staging, "fs") {
		t.Fatalf("PublishSource %s %v %v", src, block, err)
	}
	// Another volume on the same staging path is refused.
	vc2 := map[string]string{CtxFSName: "cephfs", CtxRootPath: "/other"}
	if err := s.StageVolume(context.Background(), stageReq(staging, vc2)); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("restage other path: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.UnstageVolume(context.Background(), testVol, staging); err != nil {
			t.Fatalf("unstage #%d: %v", i, err)
		}
	}
	if len(keyFiles(staging)) != 0 {
		t.Fatal("key file left after unstage")
	}
	if r, _ := readRecord(staging); r != nil {
		t.Fatal("record left after unstage")
	}
	if _, _, err := s.PublishSource(context.Background(), testVol, staging); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("PublishSource unstaged: %v", err)
	}
}

func TestKernelMountOptions(t *testing.T) {
	src, opts := kernelMount([]string{"a:6789", "b:6789"}, &mountRecord{Path: "/p", UserID: "u", FSName: "fs", Options: "noatime"}, "/k")
	if src != "a:6789,b:6789:/p" || strings.Join(opts, ",") != "name=u,secretfile=/k,mds_namespace=fs,noatime" {
		t.Fatalf("%s %v", src, opts)
	}
}

func TestStageRejects(t *testing.T) {
	s, _ := newFakeStager(t, false)
	req := stageReq(t.TempDir(), map[string]string{CtxFSName: "cephfs"})
	if err := s.StageVolume(context.Background(), req); backend.CodeOf(err) != backend.InvalidArgument || !strings.Contains(err.Error(), CtxRootPath) {
		t.Fatalf("no rootPath in either context: %v", err)
	}
	req = stageReq(t.TempDir(), map[string]string{CtxRootPath: "/p", CtxMounter: "kernel"})
	if err := s.StageVolume(context.Background(), req); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("kernel without module: %v", err)
	}
	req.Block = true
	if err := s.StageVolume(context.Background(), req); backend.CodeOf(err) != backend.InvalidArgument {
		t.Fatalf("block: %v", err)
	}
}

func TestRepairNotStagedIsNil(t *testing.T) {
	s, _ := newFakeStager(t, false)
	if err := s.Repair(context.Background(), testVol, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
}

// A volume CreateVolume made has no rootPath in its volume context: the node mounts the
// path of the publish context. A volume context's path (older volumes, static PVs) wins.
func TestStageFindsThePathInThePublishContext(t *testing.T) {
	for _, tc := range []struct{ vc, pc, want string }{
		{"", "/volumes/g/s/uuid", "/volumes/g/s/uuid"},
		{"/volumes/g/old/uuid", "/volumes/g/s/uuid", "/volumes/g/old/uuid"},
	} {
		s, fe := newFakeStager(t, false)
		staging := t.TempDir()
		vc := map[string]string{CtxFSName: "cephfs"}
		if tc.vc != "" {
			vc[CtxRootPath] = tc.vc
		}
		req := stageReq(staging, vc)
		req.PublishContext = map[string]string{PublishContextRootPath: tc.pc}
		if err := s.StageVolume(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if cmds := fe.Commands(); len(cmds) != 1 || !strings.Contains(cmds[0], "--client_mountpoint="+tc.want+" ") {
			t.Errorf("volume context %q, publish context %q: commands %v, want a mount of %s", tc.vc, tc.pc, cmds, tc.want)
		}
	}
}
