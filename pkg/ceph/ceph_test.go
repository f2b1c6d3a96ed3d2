package ceph

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

func TestCredentialsFor(t *testing.T) {
	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring")
	os.WriteFile(keyring, []byte("[client.admin]\n\tkey = AQAadmin==\n[client.tenant]\n\tkey = AQAtenant==\n\tcaps mon = \"allow r\"\n"), 0o600)
	keyfile := filepath.Join(dir, "key")
	os.WriteFile(keyfile, []byte("AQAfile==\n"), 0o600)

	cases := []struct {
		name    string
		cfg     DefaultCredentials
		secrets map[string]string
		want    Credentials
		wantErr string
	}{
		{"secrets win", DefaultCredentials{KeyringFile: keyring}, map[string]string{"userID": "client.x", "userKey": "K"}, Credentials{"x", "K"}, ""},
		{"missing userKey", DefaultCredentials{}, map[string]string{"userID": "x"}, Credentials{}, `missing key "userKey"`},
		{"missing userID", DefaultCredentials{}, map[string]string{"userKey": "K"}, Credentials{}, `missing key "userID"`},
		{"keyring default admin", DefaultCredentials{KeyringFile: keyring}, nil, Credentials{"admin", "AQAadmin=="}, ""},
		{"keyring named user", DefaultCredentials{UserID: "tenant", KeyringFile: keyring}, nil, Credentials{"tenant", "AQAtenant=="}, ""},
		{"keyring lacks user", DefaultCredentials{UserID: "nobody", KeyringFile: keyring}, nil, Credentials{}, "no key for client.nobody"},
		{"key file", DefaultCredentials{UserID: "u", KeyFile: keyfile}, nil, Credentials{"u", "AQAfile=="}, ""},
		{"nothing", DefaultCredentials{}, nil, Credentials{}, "no Ceph credentials"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CredentialsFor(tc.cfg, tc.secrets)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || backend.CodeOf(err) != backend.InvalidArgument {
					t.Fatalf("err = %v, want InvalidArgument mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestCredentialsStringHidesKey(t *testing.T) {
	c := Credentials{UserID: "u", Key: "SECRET"}
	if s := c.String(); strings.Contains(s, "SECRET") {
		t.Fatalf("String() leaks the key: %s", s)
	}
}

func TestWriteKeyFile(t *testing.T) {
	path, cleanup, err := WriteKeyFile(t.TempDir(), Credentials{UserID: "u", Key: "K=="})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "K==" {
		t.Fatalf("key file has %q", data)
	}
	cleanup()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("cleanup left %s", path)
	}
}

func TestConfArgs(t *testing.T) {
	args := strings.Join(ConfArgs(Cluster{Monitors: []string{"a:6789", "b:6789"}}, "u", "/k"), " ")
	if args != "-m a:6789,b:6789 --id u --keyfile /k -c /dev/null" {
		t.Fatalf("args: %s", args)
	}
}

type fakeMon struct {
	out []byte
	err error
}

func (f fakeMon) MonCommand(args []byte) ([]byte, string, error) {
	if !strings.Contains(string(args), `"prefix":"df"`) {
		return nil, "unexpected command", errors.New("EINVAL")
	}
	return f.out, "", f.err
}

func TestPoolsAvailable(t *testing.T) {
	df := []byte(`{"stats":{},"pools":[{"name":"rbd","id":2,"stats":{"stored":1,"max_avail":9876}},{"name":"x","stats":{"max_avail":1}}]}`)
	got, err := PoolsAvailable(fakeMon{out: df})
	if err != nil || got["rbd"] != 9876 || got["x"] != 1 || len(got) != 2 {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := PoolsAvailable(fakeMon{out: []byte("{")}); err == nil {
		t.Fatal("corrupt df accepted")
	}
	if _, err := PoolsAvailable(fakeMon{err: errors.New("ETIMEDOUT")}); err == nil || !strings.Contains(err.Error(), "ETIMEDOUT") {
		t.Fatalf("command error lost: %v", err)
	}
}
