package k8s

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteBusyboxOCI: the archive is an OCI image layout ctr can import: every blob named by
// its digest, each image's manifest naming its config and the one layer, the config's
// diff_id the layer's digest, and the layer holding the binary and a link per applet.
func TestWriteBusyboxOCI(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "busybox")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n[ \"$1\" = --list ] && printf 'sh\\nsleep\\nbusybox\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "images.tar")
	images := []OCIImage{{Name: "localhost/a/busybox:1", Cmd: []string{"/bin/sh"}}, {Name: "localhost/a/pause:2", Entrypoint: []string{"/bin/sleep", "inf"}}}
	if err := WriteBusyboxOCI(archive, fake, images); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, archive)
	if _, ok := files["oci-layout"]; !ok {
		t.Fatal("no oci-layout")
	}
	for name, data := range files {
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && digestOf(data) != "sha256:"+d {
			t.Errorf("blob %s holds data of digest %s", name, digestOf(data))
		}
	}
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 2 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	for i, m := range index.Manifests {
		if got := m.Annotations["io.containerd.image.name"]; got != images[i].Name {
			t.Errorf("manifest %d named %q, want %q", i, got, images[i].Name)
		}
		var man struct {
			Config ociDescriptor   `json:"config"`
			Layers []ociDescriptor `json:"layers"`
		}
		if err := json.Unmarshal(blob(t, files, m.Digest), &man); err != nil || len(man.Layers) != 1 {
			t.Fatalf("manifest %d: %v", i, err)
		}
		var cfg struct {
			Config struct{ Entrypoint, Cmd []string } `json:"config"`
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal(blob(t, files, man.Config.Digest), &cfg); err != nil {
			t.Fatal(err)
		}
		if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != man.Layers[0].Digest {
			t.Errorf("image %d: diff_ids %v, layer %s", i, cfg.RootFS.DiffIDs, man.Layers[0].Digest)
		}
		if strings.Join(cfg.Config.Entrypoint, " ") != strings.Join(images[i].Entrypoint, " ") {
			t.Errorf("image %d: entrypoint %v", i, cfg.Config.Entrypoint)
		}
		layer := readTarBytes(t, blob(t, files, man.Layers[0].Digest))
		if _, ok := layer["bin/busybox"]; !ok {
			t.Errorf("image %d: no bin/busybox in the layer", i)
		}
		for _, applet := range []string{"bin/sh", "bin/sleep"} {
			if _, ok := layer[applet]; !ok {
				t.Errorf("image %d: no %s link in the layer", i, applet)
			}
		}
	}
}

func blob(t *testing.T, files map[string][]byte, digest string) []byte {
	t.Helper()
	b, ok := files["blobs/sha256/"+strings.TrimPrefix(digest, "sha256:")]
	if !ok {
		t.Fatalf("no blob %s", digest)
	}
	return b
}

func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return readTarBytes(t, data)
}

func readTarBytes(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = b
	}
}
