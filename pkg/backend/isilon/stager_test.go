package isilon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	mount "k8s.io/mount-utils"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

func testStager(t *testing.T) (*Stager, *mount.FakeMounter) {
	t.Helper()
	t.Setenv(StandInEnv, "")
	s, err := NewStager(&config.Backend{Name: "isi", Kind: "isilon", Section: &Config{
		Endpoint: "https://array:8080", IsiPath: "/ifs/data/sh", NFSServer: "nfs.example",
	}})
	if err != nil {
		t.Fatal(err)
	}
	fm := mount.NewFakeMounter(nil)
	s.Mounter = fm
	return s, fm
}

func TestStageUnstage(t *testing.T) {
	s, fm := testStager(t)
	ctx := context.Background()
	id := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("v")}
	staging := t.TempDir()
	req := &backend.StageRequest{ID: id, StagingPath: staging, MountFlags: []string{"nfsvers=4.1"},
		PublishContext: map[string]string{CtxNFSServer: "10.1.1.1", CtxExportPath: "/ifs/data/sh/shop/csi-vol-" + id.Hash}}
	for i := 0; i < 2; i++ {
		if err := s.StageVolume(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	mps, _ := fm.List()
	if len(mps) != 1 || mps[0].Device != "10.1.1.1:/ifs/data/sh/shop/csi-vol-"+id.Hash || mps[0].Type != "nfs" ||
		mps[0].Path != filepath.Join(staging, "fs") || !slices.Contains(mps[0].Opts, "nfsvers=4.1") {
		t.Fatalf("mounts %+v", mps)
	}
	if _, err := os.Stat(filepath.Join(staging, recordFile)); err != nil {
		t.Fatal(err)
	}
	src, block, err := s.PublishSource(ctx, id, staging)
	if err != nil || block || src != filepath.Join(staging, "fs") {
		t.Fatalf("PublishSource %s %v %v", src, block, err)
	}
	// Mount lost: Repair mounts it again from the record.
	_ = fm.Unmount(filepath.Join(staging, "fs"))
	if err := s.Repair(ctx, id, staging, nil); err != nil {
		t.Fatal(err)
	}
	if mps, _ := fm.List(); len(mps) != 1 {
		t.Fatalf("after repair %+v", mps)
	}
	for i := 0; i < 2; i++ {
		if err := s.UnstageVolume(ctx, id, staging); err != nil {
			t.Fatal(err)
		}
	}
	if mps, _ := fm.List(); len(mps) != 0 {
		t.Fatalf("after unstage %+v", mps)
	}
	if _, _, err := s.PublishSource(ctx, id, staging); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("PublishSource unstaged: %v", err)
	}
	if err := s.Repair(ctx, id, staging, nil); err != nil {
		t.Fatalf("Repair of an unstaged volume: %v", err)
	}
}

func TestStageDefaultsAndRejects(t *testing.T) {
	s, fm := testStager(t)
	id := volid.Volume{Backend: "isi", Tenant: "shop", Hash: volid.Hash("v")}
	if err := s.StageVolume(context.Background(), &backend.StageRequest{ID: id, StagingPath: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	mps, _ := fm.List()
	if len(mps) != 1 || mps[0].Device != "nfs.example:/ifs/data/sh/shop/csi-vol-"+id.Hash {
		t.Fatalf("without context the config's server and the derived path are used: %+v", mps)
	}
	err := s.StageVolume(context.Background(), &backend.StageRequest{ID: id, StagingPath: t.TempDir(), Block: true})
	if backend.CodeOf(err) != backend.InvalidArgument {
		t.Fatalf("block: %v", err)
	}
	err = s.StageVolume(context.Background(), &backend.StageRequest{ID: id, StagingPath: t.TempDir(),
		Context: map[string]string{CtxExportPath: "/etc"}})
	if backend.CodeOf(err) != backend.InvalidArgument {
		t.Fatalf("export path outside /ifs: %v", err)
	}
	if got := mountSource("fd00::1", "/ifs/x"); got != "[fd00::1]:/ifs/x" {
		t.Fatalf("IPv6 source %s", got)
	}
}

func TestLoopbackNFSRefusesUnlistedClients(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "data", "v"), 0o755); err != nil {
		t.Fatal(err)
	}
	fm := mount.NewFakeMounter(nil)
	export := &Export{ID: 3, Path: "/ifs/data/v", ReadOnlyClients: []string{NoAccessClient}}
	m := &LoopbackNFS{Interface: fm, Root: root,
		exportOf:      func(ctx context.Context, dir string) (*Export, error) { return export, nil },
		clientAddress: func(string) (string, error) { return "127.0.0.1", nil },
	}
	target := t.TempDir()
	if err := m.Mount("127.0.0.1:/ifs/data/v", target, "nfs", nil); backend.CodeOf(err) != backend.FailedPrecondition {
		t.Fatalf("mount of an export that does not list the node: %v", err)
	}
	export.ReadOnlyClients = append(export.ReadOnlyClients, "127.0.0.1")
	if err := m.Mount("127.0.0.1:/ifs/data/v", target, "nfs", []string{"nfsvers=3"}); err != nil {
		t.Fatal(err)
	}
	mps, _ := fm.List()
	if len(mps) != 1 || mps[0].Device != filepath.Join(root, "data", "v") || !slices.Contains(mps[0].Opts, "ro") || slices.Contains(mps[0].Opts, "nfsvers=3") {
		t.Fatalf("read-only client mount %+v", mps)
	}
	export.Clients = []string{"127.0.0.1"}
	export.ReadOnlyClients = []string{NoAccessClient}
	target2 := t.TempDir()
	if err := m.Mount("127.0.0.1:/ifs/data/v", target2, "nfs", nil); err != nil {
		t.Fatal(err)
	}
	mps, _ = fm.List()
	if len(mps) != 2 || slices.Contains(mps[1].Opts, "ro") {
		t.Fatalf("read-write client mount %+v", mps)
	}
}
