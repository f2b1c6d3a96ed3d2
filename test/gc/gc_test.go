// Package gctest runs shipholdctl gc's search and removal (pkg/gc) against real storage: the
// local Ceph (RBD and CephFS) and the OneFS simulator, with orphans of every kind planted
// next to volumes a PV or a VolumeAttachment references. The cluster's PVs, attachments and
// Nodes come from a fake clientset (the apiserver e2e shows the kube side).
package gctest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/cephfs"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/gc"
	"github.com/shiphold/shiphold/pkg/volid"
	"github.com/shiphold/shiphold/test/harness"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func cli(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, append([]string{"-c", harness.CephConf()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// plant is the storage of one test: what it created, by role.
type plant struct {
	ctrls      map[string]backend.Controller
	tenant     string
	vols       map[string]*backend.Volume // "backend/role"
	recordless map[string]volid.Volume
	onefs      *harness.OneFS
	objects    []runtime.Object
	cfg        *config.Config
}

func (p *plant) create(t *testing.T, be, role string) *backend.Volume {
	t.Helper()
	v, err := p.ctrls[be].CreateVolume(ctxT(t, 2*time.Minute), &backend.VolumeRequest{Name: "pvc-" + p.tenant + "-" + role, Tenant: p.tenant, RequiredBytes: 32 << 20,
		Parameters: map[string]string{backend.ParamBackend: be}})
	if err != nil {
		t.Fatalf("create %s on %s: %v", role, be, err)
	}
	p.vols[be+"/"+role] = v
	return v
}

// pv is a PersistentVolume in phase Released that names v: still a reference.
func (p *plant) pv(v *backend.Volume) {
	p.objects = append(p.objects, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + v.ID.Backend + "-" + v.ID.Hash},
		Spec:   corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "shiphold.csi.io", VolumeHandle: v.ID.String()}}},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeReleased}})
}

// attachment is a VolumeAttachment of the PV v was created for, whose PV object is gone.
func (p *plant) attachment(role string) {
	pvName := "pvc-" + p.tenant + "-" + role
	p.objects = append(p.objects, &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "csi-" + role},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "shiphold.csi.io", NodeName: "node-1", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pvName}}})
}

func setup(t *testing.T) *plant {
	sim := harness.StartOneFS(t)
	cfg := &config.Config{Backends: []config.Backend{harness.RBDBackend(t, "ceph-rbd"), harness.CephFSBackend(t, "cephfs"), sim.Backend(t, "isilon")}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := registry.Open(cfg, true, false)
	harness.Require(t, "backends of the local Ceph and the OneFS simulator", err == nil, fmt.Sprint(err))
	t.Cleanup(b.Close)
	tenant := "gc-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	p := &plant{ctrls: b.Controllers, tenant: tenant, vols: map[string]*backend.Volume{}, recordless: map[string]volid.Volume{}, onefs: sim, cfg: cfg}
	p.objects = append(p.objects, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}}})
	t.Cleanup(func() { p.cleanup() })
	return p
}

// cleanup deletes what the test left of its tenant, whatever it got to.
func (p *plant) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, v := range p.vols {
		p.ctrls[v.ID.Backend].DeleteVolume(ctx, v.ID, nil)
	}
	for _, id := range p.recordless {
		p.ctrls[id.Backend].DeleteVolume(ctx, id, nil)
	}
}

// plantAll makes, on each backend, a volume a PV references, one a VolumeAttachment
// references, and an orphan; and the backends' own kinds of leftover.
func plantAll(t *testing.T, p *plant) {
	for _, be := range []string{"ceph-rbd", "cephfs", "isilon"} {
		p.pv(p.create(t, be, "kept"))
		p.create(t, be, "attached")
		p.create(t, be, "orphan")
	}
	// One attachment names the PV all three "attached" volumes were created for.
	p.attachment("attached")
	ns := "rbd/" + p.tenant + "/"
	// RBD: an image named like a volume without its record (a create that stopped), a
	// volume moved to the trash by hand (purge never queued), and a temporary clone
	// snapshot whose clone is gone, on the kept volume.
	half := volid.Volume{Backend: "ceph-rbd", Tenant: p.tenant, Location: p.vols["ceph-rbd/kept"].ID.Location, Hash: volid.Hash("pvc-half")}
	cli(t, "rbd", "create", "--size", "16M", ns+"csi-vol-"+half.Hash)
	p.recordless["ceph-rbd"] = half
	trashed := p.create(t, "ceph-rbd", "trashed")
	delete(p.vols, "ceph-rbd/trashed")
	cli(t, "rbd", "trash", "mv", ns+trashed.Context["imageName"])
	cli(t, "rbd", "snap", "create", ns+p.vols["ceph-rbd/kept"].Context["imageName"]+"@csi-tmp-"+volid.Hash("pvc-gone-clone"))
	// CephFS: a subvolume without a record in the tenant's group; Isilon: a bare directory.
	kept := p.vols["cephfs/kept"]
	cli(t, "ceph", "fs", "subvolume", "create", "cephfs", "csi-vol-"+volid.Hash("pvc-bare"), "--group_name", kept.Context[cephfs.CtxSubvolumeGroup])
	p.recordless["cephfs"] = volid.Volume{Backend: "cephfs", Tenant: p.tenant, Location: kept.ID.Location, Hash: volid.Hash("pvc-bare")}
	dir := filepath.Join(p.onefs.Root, "data", "shiphold", p.tenant, "csi-vol-"+volid.Hash("pvc-bare"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.recordless["isilon"] = volid.Volume{Backend: "isilon", Tenant: p.tenant, Hash: volid.Hash("pvc-bare")}
	// Isilon export clients: node-1 (a Node has 10.0.0.1), node-2 gone (10.0.0.7, its grant
	// recorded), and 10.9.9.9 added by hand at the array.
	isi := p.ctrls["isilon"].(*isilon.Controller)
	v := p.vols["isilon/kept"]
	for _, n := range []backend.Node{{Name: "node-1", Address: "10.0.0.1"}, {Name: "node-2", Address: "10.0.0.7"}} {
		if _, err := isi.PublishVolume(ctxT(t, time.Minute), v.ID, n, backend.PublishAccess{}, v.Context, nil); err != nil {
			t.Fatal(err)
		}
	}
	onefsPUT(t, p.onefs.URL+"/platform/2/protocols/nfs/exports/"+v.Context[isilon.CtxExportID], `{"clients":["10.0.0.1","10.0.0.7","10.9.9.9"]}`)
	if err := os.WriteFile(p.keptFile(), []byte("kept data"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// keptFile is a file in the referenced Isilon volume, whose data must outlive gc.
func (p *plant) keptFile() string {
	return filepath.Join(p.onefs.Root, "data", "shiphold", p.tenant, "csi-vol-"+p.vols["isilon/kept"].ID.Hash, "data.txt")
}

func onefsPUT(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	req.SetBasicAuth("admin", "onefs-test-password")
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

// inventory is the tenant's storage as the tools outside shiphold see it: RBD images, trash
// and snapshots, CephFS subvolumes, OneFS directories and export clients.
func (p *plant) inventory(t *testing.T) []string {
	t.Helper()
	var out []string
	ns := "rbd/" + p.tenant
	for _, l := range strings.Fields(cli(t, "rbd", "ls", ns)) {
		out = append(out, "rbd image "+l)
		for _, s := range strings.Split(cli(t, "rbd", "snap", "ls", ns+"/"+l), "\n") {
			if f := strings.Fields(s); len(f) > 1 && strings.HasPrefix(f[1], "csi-tmp-") {
				out = append(out, "rbd snap "+l+"@"+f[1])
			}
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(cli(t, "rbd", "trash", "ls", ns)), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			out = append(out, "rbd trash "+f[1])
		}
	}
	group := p.vols["cephfs/kept"].Context[cephfs.CtxSubvolumeGroup]
	for _, f := range strings.Split(cli(t, "ceph", "fs", "subvolume", "ls", "cephfs", "--group_name", group), "\"name\": ")[1:] {
		out = append(out, "cephfs subvolume "+strings.Trim(strings.Fields(f)[0], `"`))
	}
	dirs, _ := os.ReadDir(filepath.Join(p.onefs.Root, "data", "shiphold", p.tenant))
	for _, d := range dirs {
		out = append(out, "onefs dir "+d.Name())
	}
	audit, err := p.ctrls["isilon"].(backend.ExportAuditor).ExportClients(ctxT(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range audit {
		if e.Volume.Tenant == p.tenant {
			for _, c := range e.Clients {
				out = append(out, fmt.Sprintf("onefs client %s of %s", c, e.Volume.Hash))
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestGCFindsEveryOrphanAndRemovesOnlyWithConfirm plants orphans of every kind next to
// referenced volumes; the search lists exactly the orphans and changes nothing; the removal
// leaves the referenced volumes, their data and node-1's client, and nothing else.
func TestGCFindsEveryOrphanAndRemovesOnlyWithConfirm(t *testing.T) {
	p := setup(t)
	plantAll(t, p)
	cluster, err := gc.ReadCluster(ctxT(t, time.Minute), fake.NewSimpleClientset(p.objects...))
	if err != nil {
		t.Fatal(err)
	}
	finder := &gc.Finder{Backends: p.ctrls, Cluster: cluster, Tenant: p.tenant}
	before := p.inventory(t)
	t.Logf("storage before:\n%s", strings.Join(before, "\n"))
	cands, errs := finder.Find(ctxT(t, 3*time.Minute))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got []string
	for _, c := range cands {
		t.Logf("candidate: %s\t%s\t%s\t%s", c.Backend, c.Kind, c.Name, c.Why)
		got = append(got, c.Backend+" "+c.Kind+" "+shortName(c))
	}
	slices.Sort(got)
	isiKept := p.vols["isilon/kept"].ID.Hash
	want := []string{
		"ceph-rbd record-less volume " + p.recordless["ceph-rbd"].Hash,
		"ceph-rbd temporary snapshot csi-tmp-" + volid.Hash("pvc-gone-clone"),
		"ceph-rbd trash entry trash",
		"ceph-rbd unreferenced volume " + p.vols["ceph-rbd/orphan"].ID.Hash,
		"cephfs unreferenced volume " + p.recordless["cephfs"].Hash,
		"cephfs unreferenced volume " + p.vols["cephfs/orphan"].ID.Hash,
		"isilon stale export client 10.0.0.7 of " + isiKept,
		"isilon stale export client 10.9.9.9 of " + isiKept,
		"isilon unreferenced volume " + p.recordless["isilon"].Hash,
		"isilon unreferenced volume " + p.vols["isilon/orphan"].ID.Hash,
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("candidates:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The command without --kubeconfig lists no volume as unreferenced, and the clients no
	// publish record accounts for; without --confirm it removes nothing.
	out := shipholdctl(t, p, "gc", "--tenant", p.tenant)
	for _, want := range []string{"record-less volume", "trash entry", "temporary snapshot", "10.9.9.9 on export", "candidates; nothing removed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("gc output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, gc.KindUnreferenced) || strings.Contains(out, "10.0.0.7") {
		t.Fatalf("gc without --kubeconfig lists volumes as unreferenced or a recorded client:\n%s", out)
	}
	if after := p.inventory(t); !slices.Equal(after, before) {
		t.Fatalf("listing changed the storage:\nbefore %v\nafter  %v", before, after)
	}

	for _, r := range gc.Remove(ctxT(t, 3*time.Minute), p.ctrls, cands) {
		if r.Err != nil {
			t.Fatalf("remove %s %s: %v", r.Kind, r.Name, r.Err)
		}
		t.Logf("removed %s %s %s", r.Kind, r.Name, r.State)
	}
	for _, role := range []string{"kept", "attached"} {
		for _, be := range []string{"ceph-rbd", "cephfs", "isilon"} {
			if _, err := p.ctrls[be].GetVolume(ctxT(t, time.Minute), p.vols[be+"/"+role].ID, nil); err != nil {
				t.Fatalf("referenced volume %s/%s after gc: %v", be, role, err)
			}
		}
	}
	if b, err := os.ReadFile(p.keptFile()); err != nil || string(b) != "kept data" {
		t.Fatalf("the referenced Isilon volume's data after gc: %q, %v", b, err)
	}
	for _, be := range []string{"ceph-rbd", "cephfs", "isilon"} {
		delete(p.vols, be+"/orphan")
	}
	// The mgr purges the trash entries in the background (the orphan's too, since DeleteVolume
	// moves an image there): wait until the search finds nothing.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		left, errs := finder.Find(ctxT(t, 3*time.Minute))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after removal gc still finds %+v", left)
		}
		time.Sleep(2 * time.Second)
	}
	after := p.inventory(t)
	t.Logf("storage after:\n%s", strings.Join(after, "\n"))
	wantAfter := []string{"onefs client 10.0.0.1 of " + isiKept}
	for _, be := range []string{"ceph-rbd", "cephfs", "isilon"} {
		for _, role := range []string{"kept", "attached"} {
			v := p.vols[be+"/"+role]
			switch be {
			case "ceph-rbd":
				wantAfter = append(wantAfter, "rbd image "+v.Context["imageName"])
			case "cephfs":
				wantAfter = append(wantAfter, "cephfs subvolume "+v.Context[cephfs.CtxSubvolumeName])
			case "isilon":
				wantAfter = append(wantAfter, "onefs dir csi-vol-"+v.ID.Hash)
			}
		}
	}
	slices.Sort(wantAfter)
	if !slices.Equal(after, wantAfter) {
		t.Fatalf("storage after gc:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(wantAfter, "\n"))
	}
}

// shortName is the part of a candidate's name the test can predict.
func shortName(c gc.Candidate) string {
	switch c.Kind {
	case gc.KindUnreferenced, gc.KindRecordless:
		id, _ := volid.ParseVolume(c.Name)
		return id.Hash
	case gc.KindTemporarySnapshot:
		return c.Name[strings.Index(c.Name, "@")+1:]
	case gc.KindStaleClient:
		f := strings.Fields(c.Name)
		id, _ := volid.ParseVolume(strings.Trim(f[len(f)-1], "()"))
		return f[0] + " of " + id.Hash
	}
	return "trash"
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) { harness.Main(m) }

// shipholdctl runs the CLI, built from this tree, with the test's config.
func shipholdctl(t *testing.T, p *plant, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	bin := harness.Binary(t, "shipholdctl")
	b, err := yaml.Marshal(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append(args, "--config", cfgPath)...).CombinedOutput()
	t.Logf("shipholdctl %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("shipholdctl %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
