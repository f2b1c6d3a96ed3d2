package harness

import (
	"io"
	"log"
	"os"
	"path/filepath"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/test/onefssim"
)

// OneFS is a running OneFS simulator for a test.
type OneFS struct {
	Server *onefssim.Server
	URL    string
	// Root is the real directory that stands for /ifs.
	Root string
}

// StartOneFS serves the OneFS Platform API simulator on loopback until the test ends.
func StartOneFS(t testing.TB) *OneFS {
	t.Helper()
	return StartOneFSWith(t, nil)
}

// StartOneFSWith is StartOneFS with options adjusted first (e.g. Ganesha, to make exports real).
func StartOneFSWith(t testing.TB, adjust func(*onefssim.Options)) *OneFS {
	t.Helper()
	root := t.TempDir()
	// Lists page at 3 entries (OneFS: 1000), so every paging loop of the driver runs.
	opts := onefssim.Options{
		Root: root, User: "admin", Password: "onefs-test-password", Listen: "127.0.0.1:0",
		Logger: log.New(io.Discard, "", 0), PageSize: 3,
	}
	if adjust != nil {
		adjust(&opts)
	}
	srv, err := onefssim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	url, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &OneFS{Server: srv, URL: url, Root: opts.Root}
}

// IsilonBackend starts a simulator and returns a config entry pointing at it.
func IsilonBackend(t testing.TB, name string) config.Backend {
	t.Helper()
	sim := StartOneFS(t)
	return sim.Backend(t, name)
}

// Backend is a config entry for this simulator, with a credentials file.
func (o *OneFS) Backend(t testing.TB, name string) config.Backend {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "isilon-credentials")
	if err := os.WriteFile(creds, []byte("username: admin\npassword: onefs-test-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Backend{Name: name, Kind: "isilon", Section: &isilon.Config{
		Endpoint: o.URL, AccessZone: "System", IsiPath: "/ifs/data/shiphold", NFSServer: "127.0.0.1",
		InsecureSkipVerify: true, CredentialsFile: creds, RequestTimeout: "10s",
	}}
}
