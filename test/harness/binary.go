package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	binMu sync.Mutex
	built = map[string]string{} // "name tags" → built binary
)

// Binary builds github.com/shiphold/shiphold/cmd/<name> from this tree, with the pacific
// tag and any extra build tags, once per test process (as `make build` would), and returns
// its path. A build failure fails the test with the compiler's output.
func Binary(t testing.TB, name string, tags ...string) string {
	t.Helper()
	key := name + " " + strings.Join(tags, ",")
	binMu.Lock()
	defer binMu.Unlock()
	if bin, ok := built[key]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "shiphold-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=-tags="+strings.Join(append([]string{"pacific"}, tags...), ","))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s (tags %v): %v\n%s", name, tags, err, out)
	}
	built[key] = bin
	return bin
}

// RemoveBinaries deletes what Binary built; a package's TestMain calls it after m.Run.
func RemoveBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	for key, bin := range built {
		os.RemoveAll(filepath.Dir(bin))
		delete(built, key)
	}
}

// Main runs a test package and removes the binaries it built: func TestMain(m *testing.M)
// { harness.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	RemoveBinaries()
	os.Exit(code)
}
