package k8s

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/test/harness"
)

// The storage side of the end-to-end test: where each backend keeps a tenant's volumes, read
// with the Ceph CLIs and the OneFS simulator's API, never through the driver.

// publishRecord is the image / subvolume metadata key in which ControllerPublishVolume
// records a node's grant on RBD and CephFS ("rw" or "ro"; pkg/backend PublishRecordKey):
// node-1 for the control-plane test, the kubelet's node for the pod test.
func (b *e2eBackend) publishRecord() string {
	if b.node != "" {
		return "shiphold.node." + b.node
	}
	return "shiphold.node." + e2eNodeName
}

// cephCLI runs ceph or rbd against the local cluster and returns stdout.
func cephCLI(ctx context.Context, conf, tool string, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, tool, append([]string{"-c", conf}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func isENOENT(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "No such file or directory") || strings.Contains(err.Error(), "ENOENT") ||
		strings.Contains(err.Error(), "does not exist"))
}

// rbdChecks: a tenant's volumes are images csi-vol-<hash> in the RADOS namespace <tenant> of
// the pool.
func rbdChecks(b *e2eBackend, conf, pool string) {
	list := func(ctx context.Context, ns string, trash bool) ([]string, error) {
		args := []string{"ls", "--format", "json", "--pool", pool, "--namespace", ns}
		if trash {
			args = append([]string{"trash"}, args...)
		}
		out, err := cephCLI(ctx, conf, "rbd", args...)
		if isENOENT(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if trash {
			var entries []struct{ ID, Name string }
			if err := json.Unmarshal(out, &entries); err != nil {
				return nil, err
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name+" (id "+e.ID+")")
			}
			return names, nil
		}
		var names []string
		return names, json.Unmarshal(out, &names)
	}
	b.volume = func(ctx context.Context, tenant, hash string) (int64, error) {
		out, err := cephCLI(ctx, conf, "rbd", "info", "--format", "json", pool+"/"+tenant+"/csi-vol-"+hash)
		if err != nil {
			names, _ := list(ctx, tenant, false)
			return 0, fmt.Errorf("no image csi-vol-%s in RADOS namespace %s of pool %s (rbd ls: %v): %w", hash, tenant, pool, names, err)
		}
		var info struct {
			Size int64 `json:"size"`
		}
		if err := json.Unmarshal(out, &info); err != nil {
			return 0, err
		}
		return info.Size, nil
	}
	b.attachment = func(ctx context.Context, tenant, hash string) (string, error) {
		image := pool + "/" + tenant + "/csi-vol-" + hash
		out, err := cephCLI(ctx, conf, "rbd", "image-meta", "list", "--format", "json", image)
		if err != nil {
			return "", err
		}
		meta := map[string]string{}
		if len(bytes.TrimSpace(out)) > 0 { // no metadata at all prints nothing
			if err := json.Unmarshal(out, &meta); err != nil {
				return "", fmt.Errorf("rbd image-meta list %s: %w: %s", image, err, out)
			}
		}
		return meta[b.publishRecord()], nil
	}
	b.snapshot = func(ctx context.Context, tenant, hash, snapHash string) error {
		image := pool + "/" + tenant + "/csi-vol-" + hash
		out, err := cephCLI(ctx, conf, "rbd", "snap", "ls", "--format", "json", image)
		if err != nil {
			return err
		}
		var snaps []struct{ Name string }
		if err := json.Unmarshal(out, &snaps); err != nil {
			return err
		}
		var names []string
		for _, s := range snaps {
			if s.Name == "csi-snap-"+snapHash {
				return nil
			}
			names = append(names, s.Name)
		}
		return fmt.Errorf("no snapshot csi-snap-%s of image %s (rbd snap ls: %v)", snapHash, image, names)
	}
	b.leftovers = func(ctx context.Context) ([]string, error) {
		var left []string
		for _, ns := range e2eTenants {
			for _, trash := range []bool{false, true} {
				names, err := list(ctx, ns, trash)
				if err != nil {
					return nil, err
				}
				for _, n := range names {
					where := "image"
					if trash {
						where = "trash image"
					}
					left = append(left, fmt.Sprintf("%s %s/%s/%s", where, pool, ns, n))
				}
			}
		}
		return left, nil
	}
	b.purge = func(ctx context.Context) {
		for _, ns := range e2eTenants {
			names, _ := list(ctx, ns, false)
			for _, n := range names {
				spec := pool + "/" + ns + "/" + n
				_, _ = cephCLI(ctx, conf, "rbd", "snap", "unprotect", spec) // best-effort
				_, _ = cephCLI(ctx, conf, "rbd", "snap", "purge", spec)
				_, _ = cephCLI(ctx, conf, "rbd", "rm", "--no-progress", spec)
			}
			_, _ = cephCLI(ctx, conf, "rbd", "trash", "purge", "--pool", pool, "--namespace", ns)
		}
	}
}

// cephfsChecks: a tenant's volumes are subvolumes csi-vol-<hash> in group <prefix><tenant>,
// their size the subvolume quota.
func cephfsChecks(b *e2eBackend, conf, fs, prefix string) {
	list := func(ctx context.Context, group string) ([]string, error) {
		out, err := cephCLI(ctx, conf, "ceph", "fs", "subvolume", "ls", fs, group, "--format", "json")
		if isENOENT(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var entries []struct{ Name string }
		if err := json.Unmarshal(out, &entries); err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name)
		}
		return names, nil
	}
	b.volume = func(ctx context.Context, tenant, hash string) (int64, error) {
		group := prefix + tenant
		out, err := cephCLI(ctx, conf, "ceph", "fs", "subvolume", "info", fs, "csi-vol-"+hash, group, "--format", "json")
		if err != nil {
			names, _ := list(ctx, group)
			return 0, fmt.Errorf("no subvolume csi-vol-%s in group %s of %s (subvolume ls: %v): %w", hash, group, fs, names, err)
		}
		var info struct {
			BytesQuota json.RawMessage `json:"bytes_quota"`
			State      string          `json:"state"`
		}
		if err := json.Unmarshal(out, &info); err != nil {
			return 0, err
		}
		var q int64
		if err := json.Unmarshal(info.BytesQuota, &q); err != nil {
			return 0, fmt.Errorf("subvolume %s/csi-vol-%s has bytes_quota %s (state %s)", group, hash, info.BytesQuota, info.State)
		}
		return q, nil
	}
	b.attachment = func(ctx context.Context, tenant, hash string) (string, error) {
		group := prefix + tenant
		out, err := cephCLI(ctx, conf, "ceph", "fs", "subvolume", "metadata", "ls", fs, "csi-vol-"+hash, "--group_name", group, "--format", "json")
		if err != nil {
			return "", err
		}
		meta := map[string]string{}
		if err := json.Unmarshal(out, &meta); err != nil {
			return "", fmt.Errorf("subvolume metadata of %s/csi-vol-%s: %w: %s", group, hash, err, out)
		}
		return meta[b.publishRecord()], nil
	}
	b.snapshot = func(ctx context.Context, tenant, hash, snapHash string) error {
		group, sub := prefix+tenant, "csi-vol-"+hash
		out, err := cephCLI(ctx, conf, "ceph", "fs", "subvolume", "snapshot", "ls", fs, sub, "--group_name", group, "--format", "json")
		if err != nil {
			return err
		}
		var snaps []struct{ Name string }
		if err := json.Unmarshal(out, &snaps); err != nil {
			return err
		}
		var names []string
		for _, s := range snaps {
			if s.Name == "csi-snap-"+snapHash {
				return nil
			}
			names = append(names, s.Name)
		}
		return fmt.Errorf("no snapshot csi-snap-%s of subvolume %s/%s (subvolume snapshot ls: %v)", snapHash, group, sub, names)
	}
	b.leftovers = func(ctx context.Context) ([]string, error) {
		var left []string
		for _, ns := range e2eTenants {
			names, err := list(ctx, prefix+ns)
			if err != nil {
				return nil, err
			}
			for _, n := range names {
				left = append(left, fmt.Sprintf("subvolume %s/%s", prefix+ns, n))
			}
		}
		return left, nil
	}
	b.purge = func(ctx context.Context) {
		for _, ns := range e2eTenants {
			group := prefix + ns
			names, _ := list(ctx, group)
			for _, n := range names {
				if out, err := cephCLI(ctx, conf, "ceph", "fs", "subvolume", "snapshot", "ls", fs, n, group, "--format", "json"); err == nil {
					var snaps []struct{ Name string }
					_ = json.Unmarshal(out, &snaps)
					for _, s := range snaps {
						_, _ = cephCLI(ctx, conf, "ceph", "fs", "subvolume", "snapshot", "rm", fs, n, s.Name, group, "--force")
					}
				}
				_, _ = cephCLI(ctx, conf, "ceph", "fs", "subvolume", "rm", fs, n, group, "--force")
			}
		}
	}
}

// isilonChecks: a tenant's volumes are directories <isiPath>/<tenant>/csi-vol-<hash> with a
// hard directory quota and an NFS export; snapshots are OneFS snapshots csi-snap-<hash>.
// Everything is read through the simulator's Platform API, as from an array.
func isilonChecks(b *e2eBackend, sim *harness.OneFS, cfg *isilon.Config) error {
	user, pass, err := credentialsFile(cfg.CredentialsFile)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the simulator's self-signed cert
	}}
	papi := func(ctx context.Context, p string, into any) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(sim.URL, "/")+p, nil)
		req.SetBasicAuth(user, pass)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", p, resp.Status, body)
		}
		return json.Unmarshal(body, into)
	}
	// list reads every page of a Platform API collection: OneFS pages long lists and hands
	// out a resume token, which must then be the only query parameter.
	list := func(ctx context.Context, p, key string) ([]json.RawMessage, error) {
		var all []json.RawMessage
		for next := p; ; {
			var page map[string]json.RawMessage
			if err := papi(ctx, next, &page); err != nil {
				return nil, err
			}
			var items []json.RawMessage
			if err := json.Unmarshal(page[key], &items); err != nil {
				return nil, fmt.Errorf("GET %s: %q: %w", next, key, err)
			}
			all = append(all, items...)
			var resume string
			if r := page["resume"]; len(r) == 0 || json.Unmarshal(r, &resume) != nil || resume == "" {
				return all, nil
			}
			base, _, _ := strings.Cut(p, "?")
			next = base + "?resume=" + url.QueryEscape(resume)
		}
	}
	type quota struct {
		ID         string `json:"id"`
		Path       string `json:"path"`
		Thresholds struct {
			Hard *int64 `json:"hard"`
		} `json:"thresholds"`
	}
	quotas := func(ctx context.Context) ([]quota, error) {
		raw, err := list(ctx, "/platform/1/quota/quotas", "quotas")
		return decodeAll[quota](raw, err)
	}
	type export struct {
		ID              int64    `json:"id"`
		Paths           []string `json:"paths"`
		Clients         []string `json:"clients"`
		ReadOnlyClients []string `json:"read_only_clients"`
		ReadWrite       []string `json:"read_write_clients"`
		RootClients     []string `json:"root_clients"`
	}
	exports := func(ctx context.Context, ifsPath string) ([]export, error) {
		q := url.Values{"zone": {cfg.AccessZone}}
		if ifsPath != "" {
			q.Set("path", ifsPath)
		}
		raw, err := list(ctx, "/platform/2/protocols/nfs/exports?"+q.Encode(), "exports")
		return decodeAll[export](raw, err)
	}
	type snapshot struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
		Path string `json:"path"`
	}
	volPath := func(tenant, hash string) string { return path.Join(cfg.IsiPath, tenant, "csi-vol-"+hash) }
	realDir := func(ifs string) string { return filepath.Join(sim.Root, strings.TrimPrefix(ifs, "/ifs")) }
	inTenants := func(p string) bool {
		for _, ns := range e2eTenants {
			if p == path.Join(cfg.IsiPath, ns) || strings.HasPrefix(p, path.Join(cfg.IsiPath, ns)+"/") {
				return true
			}
		}
		return false
	}

	b.volume = func(ctx context.Context, tenant, hash string) (int64, error) {
		p := volPath(tenant, hash)
		fi, err := os.Stat(realDir(p))
		if err != nil {
			return 0, fmt.Errorf("no volume directory %s on the simulator: %w", p, err)
		}
		if !fi.IsDir() {
			return 0, fmt.Errorf("%s is not a directory", p)
		}
		qs, err := quotas(ctx)
		if err != nil {
			return 0, err
		}
		for _, q := range qs {
			if q.Path == p {
				if q.Thresholds.Hard == nil {
					return 0, fmt.Errorf("quota %s on %s has no hard threshold", q.ID, p)
				}
				return *q.Thresholds.Hard, nil
			}
		}
		return 0, fmt.Errorf("volume directory %s has no quota", p)
	}
	// The grant of an NFS volume is the node's address among its export's clients.
	b.attachment = func(ctx context.Context, tenant, hash string) (string, error) {
		p := volPath(tenant, hash)
		es, err := exports(ctx, p)
		if err != nil {
			return "", err
		}
		if len(es) == 0 {
			return "", fmt.Errorf("no export of %s in zone %s", p, cfg.AccessZone)
		}
		mode := ""
		for _, e := range es {
			if !slices.Contains(e.Paths, p) {
				return "", fmt.Errorf("GET exports?path=%s returned export %d of %v", p, e.ID, e.Paths)
			}
			switch {
			case slices.Contains(e.Clients, e2eNodeAddr) || slices.Contains(e.ReadWrite, e2eNodeAddr) || slices.Contains(e.RootClients, e2eNodeAddr):
				mode = "rw"
			case slices.Contains(e.ReadOnlyClients, e2eNodeAddr) && mode == "":
				mode = "ro"
			}
		}
		return mode, nil
	}
	b.snapshot = func(ctx context.Context, tenant, hash, snapHash string) error {
		name := "csi-snap-" + snapHash
		var r struct{ Snapshots []snapshot }
		if err := papi(ctx, "/platform/1/snapshot/snapshots/"+name, &r); err != nil {
			return err
		}
		if len(r.Snapshots) != 1 {
			return fmt.Errorf("GET snapshot %s: %d snapshots", name, len(r.Snapshots))
		}
		if got, want := path.Clean(r.Snapshots[0].Path), volPath(tenant, hash); got != want {
			return fmt.Errorf("snapshot %s (id %d) is of %s, want the source volume %s", name, r.Snapshots[0].ID, got, want)
		}
		return nil
	}
	b.leftovers = func(ctx context.Context) ([]string, error) {
		var left []string
		for _, ns := range e2eTenants {
			ents, err := os.ReadDir(realDir(path.Join(cfg.IsiPath, ns)))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			for _, e := range ents {
				left = append(left, "directory "+path.Join(cfg.IsiPath, ns, e.Name()))
			}
		}
		es, err := exports(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			for _, p := range e.Paths {
				if inTenants(p) {
					left = append(left, fmt.Sprintf("export %d of %s", e.ID, p))
				}
			}
		}
		qs, err := quotas(ctx)
		if err != nil {
			return nil, err
		}
		for _, q := range qs {
			if inTenants(q.Path) && q.Path != path.Join(cfg.IsiPath, path.Base(q.Path)) {
				left = append(left, fmt.Sprintf("quota %s of %s", q.ID, q.Path))
			}
		}
		raw, err := list(ctx, "/platform/1/snapshot/snapshots", "snapshots")
		snaps, err := decodeAll[snapshot](raw, err)
		if err != nil {
			return nil, err
		}
		for _, s := range snaps {
			if inTenants(s.Path) || strings.HasPrefix(s.Name, "csi-snap-") {
				left = append(left, fmt.Sprintf("snapshot %d %s of %s", s.ID, s.Name, s.Path))
			}
		}
		return left, nil
	}
	b.purge = func(context.Context) {} // the simulator and its directory end with the test
	return nil
}

// decodeAll decodes the items of a Platform API list.
func decodeAll[T any](raw []json.RawMessage, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	out := make([]T, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
