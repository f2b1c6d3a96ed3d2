package migratetest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/migrate"
	"github.com/shiphold/shiphold/pkg/migrate/endpoint"
)

// testReadBackFromRADOS: a CephFS target reads a small file back from its RADOS object
// once the writer has synced, past the client: what is read is what the object holds (here
// overwritten behind the client's back), a hole at the end reads as zeros, and a file
// larger than a stripe unit is left to the verification client.
func testReadBackFromRADOS(t *testing.T, s *stack) {
	v := s.volume(cephfsBackend, "read-back", 1<<30)
	env := &endpoint.Env{Config: s.cfg, Controllers: s.b.Controllers, Stagers: s.b.Stagers, WorkDir: t.TempDir()}
	side, err := env.OpenVolume(ctxT(t), v.ID, endpoint.Target)
	if err != nil {
		t.Fatal(err)
	}
	defer side.Close()
	sr, ok := side.FS.(migrate.StoredReader)
	if !ok {
		t.Fatalf("the CephFS target %T does not read back from storage", side.FS)
	}
	data := make([]byte, 5000)
	rand.Read(data)
	w, err := side.FS.Create("page.html", 0o644)
	if err == nil {
		_, err = w.WriteAt(data, 0)
	}
	if err == nil {
		err = w.Truncate(9000)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = side.FS.Sync()
	}
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, data...), make([]byte, 4000)...)
	if got := readStored(t, sr, "page.html", 9000); !bytes.Equal(got, want) {
		t.Fatalf("read back from RADOS: %d bytes differ from what was written", len(got))
	}
	a, err := side.FS.Lstat("page.html")
	if err != nil {
		t.Fatal(err)
	}
	// The object, found by listing the pool, overwritten without the client knowing.
	obj := fmt.Sprintf("%x.00000000", a.Ino)
	out, err := exec.Command("rados", "-p", "cephfs.cephfs.data", "ls", "--all").Output()
	if err != nil {
		t.Fatalf("rados ls: %v", err)
	}
	ns, found := "", false
	for _, l := range strings.Split(string(out), "\n") {
		if n, o, ok := strings.Cut(l, "\t"); ok && o == obj {
			ns, found = n, true
		}
	}
	if !found {
		t.Fatalf("no object %s in the data pool", obj)
	}
	other := bytes.Repeat([]byte("storage"), 1000)[:7000]
	f := filepath.Join(t.TempDir(), "obj")
	if err := os.WriteFile(f, other, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rados", "-p", "cephfs.cephfs.data", "-N", ns, "put", obj, f).CombinedOutput(); err != nil {
		t.Fatalf("rados put: %v %s", err, out)
	}
	want = append(append([]byte{}, other...), make([]byte, 2000)...)
	if got := readStored(t, sr, "page.html", 9000); !bytes.Equal(got, want) {
		t.Fatalf("the read back does not show what the RADOS object holds")
	}
	if _, ok, err := sr.OpenStored("page.html", 64<<20); ok || err != nil {
		t.Fatalf("a file past one stripe unit: ok %v, err %v; want it left to Open", ok, err)
	}
}

func readStored(t *testing.T, sr migrate.StoredReader, p string, size int64) []byte {
	t.Helper()
	r, ok, err := sr.OpenStored(p, size)
	if err != nil || !ok {
		t.Fatalf("open %s stored: ok %v, %v", p, ok, err)
	}
	defer r.Close()
	b := make([]byte, size)
	if n, err := r.ReadAt(b, 0); err != nil || n != len(b) {
		t.Fatalf("read %s stored: %d bytes, %v", p, n, err)
	}
	return b
}
