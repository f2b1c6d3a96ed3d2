// Package ceph holds what the rbd and cephfs backends share: cephx credentials, one pooled
// rados connection per (backend, cluster, user) whose every call is bounded by its request
// (Calls), the errno classifier, and helpers for the ceph CLI clients a node runs.
package ceph

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
)

// CSI secret keys for Ceph, as ceph-csi names them.
const (
	SecretUserID  = "userID"
	SecretUserKey = "userKey"
)

// Credentials are a cephx user (without the "client." prefix) and its base64 secret.
type Credentials struct {
	UserID string
	Key    string
}

// String never shows the key.
func (c Credentials) String() string { return "client." + c.UserID }

// CredentialsFor picks the request's CSI secrets when it has any, else the configured
// keyring or key file.
func CredentialsFor(c DefaultCredentials, secrets map[string]string) (Credentials, error) {
	if len(secrets) > 0 {
		user, key := secrets[SecretUserID], secrets[SecretUserKey]
		switch {
		case user == "":
			return Credentials{}, backend.Errorf(backend.InvalidArgument, "Ceph secret is missing key %q (the cephx user, without \"client.\")", SecretUserID)
		case key == "":
			return Credentials{}, backend.Errorf(backend.InvalidArgument, "Ceph secret is missing key %q (the cephx key of user %s)", SecretUserKey, user)
		}
		return Credentials{UserID: strings.TrimPrefix(user, "client."), Key: key}, nil
	}
	user := strings.TrimPrefix(c.UserID, "client.")
	if user == "" {
		user = "admin"
	}
	switch {
	case c.KeyFile != "":
		data, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return Credentials{}, backend.Errorf(backend.InvalidArgument, "no Ceph secret in the request and the configured key file cannot be read: %v", err)
		}
		return Credentials{UserID: user, Key: strings.TrimSpace(string(data))}, nil
	case c.KeyringFile != "":
		data, err := os.ReadFile(c.KeyringFile)
		if err != nil {
			return Credentials{}, backend.Errorf(backend.InvalidArgument, "no Ceph secret in the request and the configured keyring cannot be read: %v", err)
		}
		key, err := keyFromKeyring(data, "client."+user)
		if err != nil {
			return Credentials{}, backend.Errorf(backend.InvalidArgument, "keyring %s: %v", c.KeyringFile, err)
		}
		return Credentials{UserID: user, Key: key}, nil
	}
	return Credentials{}, backend.Errorf(backend.InvalidArgument,
		"no Ceph credentials: the request has no secret (%q, %q) and the backend config sets neither credentials.keyringFile nor credentials.keyFile", SecretUserID, SecretUserKey)
}

// keyFromKeyring finds the key of entity in a keyring file ([client.x] / key = ...).
func keyFromKeyring(data []byte, entity string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	in := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			in = line[1:len(line)-1] == entity
			continue
		}
		if !in {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "key" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no key for %s", entity)
}

// keyFilePattern names the files WriteKeyFile makes.
const keyFilePattern = ".shiphold-key-*"

// RemoveKeyFiles removes the key files WriteKeyFile left in dir: a crash between writing a
// key and removing it must not leave the key at rest on the node.
func RemoveKeyFiles(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, keyFilePattern))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove key file %s: %w", f, err)
		}
	}
	return nil
}

// WriteKeyFile writes the key to a new 0600 file in dir (a temp dir when empty) for a CLI
// client, so that the secret never appears on a command line.
func WriteKeyFile(dir string, cred Credentials) (string, func(), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", nil, err
		}
	}
	f, err := os.CreateTemp(dir, keyFilePattern)
	if err != nil {
		return "", nil, fmt.Errorf("create key file: %w", err)
	}
	path := f.Name()
	cleanup := func() { os.Remove(path) }
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		cleanup()
		return "", nil, err
	}
	if _, err := f.WriteString(cred.Key); err != nil {
		f.Close()
		cleanup()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return filepath.Clean(path), cleanup, nil
}

// ConfArgs points a ceph CLI tool at the cluster without relying on /etc/ceph.
func ConfArgs(cluster Cluster, userID, keyFile string) []string {
	args := []string{"-m", strings.Join(cluster.Monitors, ","), "--id", userID, "--keyfile", keyFile}
	if cluster.ConfFile != "" {
		args = append(args, "-c", cluster.ConfFile)
	} else {
		// An empty config: do not pick up a node's /etc/ceph/ceph.conf by accident.
		args = append(args, "-c", "/dev/null")
	}
	return args
}
