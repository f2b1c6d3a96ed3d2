package storm

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/test/harness"
)

// cli runs a Ceph command-line tool against conf and decodes its JSON answer; a missing
// namespace, group or image decodes as nothing.
func cli(t *testing.T, conf string, out any, name string, args ...string) bool {
	t.Helper()
	b, err := exec.Command(name, append([]string{"-c", conf}, args...)...).Output()
	if err != nil {
		return false
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, b)
	}
	return true
}

// rbdStore is the storm tenant's RADOS namespace in pool rbd.
type rbdStore struct{ conf, ns string }

func (s *rbdStore) census(t *testing.T) map[string][]string {
	out := map[string][]string{}
	var images []string
	cli(t, s.conf, &images, "rbd", "ls", "--format", "json", "rbd/"+s.ns)
	out["image"] = images
	for _, img := range images {
		var snaps []struct{ Name string }
		cli(t, s.conf, &snaps, "rbd", "snap", "ls", "--all", "--format", "json", "rbd/"+s.ns+"/"+img)
		for _, sn := range snaps {
			class := "snapshot"
			if !strings.HasPrefix(sn.Name, "csi-snap-") {
				class = "temporary snapshot"
			}
			out[class] = append(out[class], img+"@"+sn.Name)
		}
	}
	var trash []struct{ ID, Name string }
	cli(t, s.conf, &trash, "rbd", "trash", "ls", "--all", "--format", "json", "rbd/"+s.ns)
	for _, e := range trash {
		out["trash entry"] = append(out["trash entry"], e.Name+"("+e.ID+")")
	}
	out["mgr task"] = s.tasks(t)
	if len(images) == 0 {
		// With no image left, any image object in the namespace is a remain.
		b, _ := exec.Command("rados", "-c", s.conf, "-p", "rbd", "--namespace", s.ns, "ls").Output()
		for _, o := range strings.Fields(string(b)) {
			for _, p := range []string{"rbd_data.", "rbd_header.", "rbd_id.", "rbd_object_map."} {
				if strings.HasPrefix(o, p) {
					out["rados object"] = append(out["rados object"], o)
				}
			}
		}
	}
	return out
}

func (s *rbdStore) tasks(t *testing.T) []string {
	var tasks []struct {
		Message string
		Refs    struct {
			Namespace string `json:"pool_namespace"`
		}
	}
	cli(t, s.conf, &tasks, "ceph", "rbd", "task", "list", "--format", "json")
	var out []string
	for _, task := range tasks {
		if task.Refs.Namespace == s.ns {
			out = append(out, task.Message)
		}
	}
	return out
}

// settled waits for the mgr's queue and the trash to empty: a trash entry whose purge a
// killed controller never queued is queued by the controller's periodic sweep.
func (s *rbdStore) settled(t *testing.T) bool {
	var trash []struct{ ID string }
	cli(t, s.conf, &trash, "rbd", "trash", "ls", "--all", "--format", "json", "rbd/"+s.ns)
	return len(s.tasks(t)) == 0 && len(trash) == 0
}

// cephfsStore is the storm tenant's subvolume group.
type cephfsStore struct{ conf, group string }

func (s *cephfsStore) census(t *testing.T) map[string][]string {
	out := map[string][]string{}
	var subs []struct{ Name string }
	cli(t, s.conf, &subs, "ceph", "fs", "subvolume", "ls", "cephfs", "--group_name", s.group, "--format", "json")
	for _, sub := range subs {
		out["subvolume"] = append(out["subvolume"], sub.Name)
		var snaps []struct{ Name string }
		cli(t, s.conf, &snaps, "ceph", "fs", "subvolume", "snapshot", "ls", "cephfs", sub.Name, "--group_name", s.group, "--format", "json")
		for _, sn := range snaps {
			class := "snapshot"
			if !strings.HasPrefix(sn.Name, "csi-snap-") {
				class = "temporary snapshot"
			}
			out[class] = append(out[class], sub.Name+"@"+sn.Name)
		}
	}
	return out
}

func (s *cephfsStore) settled(*testing.T) bool { return true }

// isilonStore is the storm tenant's directory on the simulated array.
type isilonStore struct {
	sim *harness.OneFS
	dir string
}

func (s *isilonStore) papi(t *testing.T, path string, out any) {
	req, _ := http.NewRequest(http.MethodGet, s.sim.URL+path, nil)
	req.SetBasicAuth("admin", "onefs-test-password")
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// papiList GETs every page of a PAPI listing (the harness's simulator pages at 3 entries,
// as OneFS does at 1000) and returns the items under key.
func papiList[T any](t *testing.T, s *isilonStore, path, key string) []T {
	var all []T
	for next := path; ; {
		var page map[string]json.RawMessage
		s.papi(t, next, &page)
		var items []T
		if err := json.Unmarshal(page[key], &items); err != nil {
			t.Fatalf("GET %s: %s: %v", next, key, err)
		}
		all = append(all, items...)
		var resume string
		if raw := page["resume"]; raw != nil && json.Unmarshal(raw, &resume) != nil {
			t.Fatalf("GET %s: resume %s", next, raw)
		}
		if resume == "" {
			return all
		}
		next = path + "?resume=" + url.QueryEscape(resume)
	}
}

func (s *isilonStore) census(t *testing.T) map[string][]string {
	out := map[string][]string{}
	under := func(p string) bool { return strings.HasPrefix(p, s.dir+"/") }
	entries, _ := os.ReadDir(filepath.Join(s.sim.Root, strings.TrimPrefix(s.dir, "/ifs/")))
	for _, e := range entries {
		out["dir"] = append(out["dir"], e.Name())
	}
	for _, q := range papiList[struct{ Path string }](t, s, "/platform/1/quota/quotas", "quotas") {
		if under(q.Path) {
			out["quota"] = append(out["quota"], q.Path)
		}
	}
	for _, e := range s.sim.Server.Exports() {
		for _, p := range e.Paths {
			if !under(p) {
				continue
			}
			out["export"] = append(out["export"], p)
			for _, l := range [][]string{e.Clients, e.RootClients, e.ReadOnlyClients, e.ReadWriteClients} {
				for _, c := range l {
					if c != isilon.NoAccessClient {
						out["export client"] = append(out["export client"], p+" "+c)
					}
				}
			}
		}
	}
	for _, sn := range papiList[struct{ Name, Path string }](t, s, "/platform/1/snapshot/snapshots", "snapshots") {
		if under(sn.Path) {
			out["snapshot"] = append(out["snapshot"], sn.Name)
		}
	}
	return out
}

func (s *isilonStore) settled(*testing.T) bool { return true }
