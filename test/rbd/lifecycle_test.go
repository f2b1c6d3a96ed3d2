package rbdtest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

// local is the harness's cluster (SHIPHOLD_CEPH_DIR) with the CLI and a fresh controller
// per call, as a restarted plugin would have.
type local struct {
	conf    string
	backend config.Backend
}

func newLocal(t *testing.T) *local {
	t.Helper()
	be := harness.RBDBackend(t, "rbd-life")
	return &local{conf: filepath.Join(harness.CephDir(), "ceph.conf"), backend: be}
}

func (l *local) controller(t *testing.T) *rbd.Controller {
	t.Helper()
	conns := ceph.NewConnections()
	ctl, err := rbd.NewController(&l.backend, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conns.Close)
	return ctl
}

func (l *local) cli(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, append([]string{"-c", l.conf}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *local) tenant(t *testing.T, prefix string) string {
	tenant := prefix + "-" + strings.ToLower(strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""))
	t.Cleanup(func() { exec.Command("rbd", "-c", l.conf, "namespace", "rm", "rbd/"+tenant).Run() })
	return tenant
}

// fill writes mib MiB of data to the head of an image.
func (l *local) fill(t *testing.T, spec string, mib int) {
	t.Helper()
	l.cli(t, "rbd", "bench", "--io-type", "write", "--io-size", "4M", "--io-pattern", "seq", "--io-total", strconv.Itoa(mib)+"M", spec)
}

func (l *local) digest(t *testing.T, spec string) string {
	t.Helper()
	cmd := exec.Command("rbd", "-c", l.conf, "export", "--no-progress", spec, "-")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rbd export %s: %v", spec, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type mgrTask struct {
	Refs struct {
		Action    string `json:"action"`
		Namespace string `json:"pool_namespace"`
		Image     string `json:"image_name"`
	} `json:"refs"`
}

// tasks lists the rbd_support mgr module's queue for one namespace.
func (l *local) tasks(t *testing.T, ns string) []mgrTask {
	t.Helper()
	var all, out []mgrTask
	if err := json.Unmarshal([]byte(l.cli(t, "ceph", "rbd", "task", "list", "--format", "json")), &all); err != nil {
		t.Fatal(err)
	}
	for _, task := range all {
		if task.Refs.Namespace == ns {
			out = append(out, task)
		}
	}
	return out
}

func hasParent(info string) bool { return strings.Contains(info, "parent:") }

func spec(v *backend.Volume) string {
	return v.Context["pool"] + "/" + v.Context["radosNamespace"] + "/" + v.Context["imageName"]
}

func eventually(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if err = fn(); err == nil {
			return
		}
	}
	t.Fatalf("%s: still not true after %s: %v", what, d, err)
}

// minute is a one-minute request deadline, as a sidecar gives each call.
func minute(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// DeleteSnapshot of a snapshot with clones does not flatten them inside the request: it
// queues a flatten per clone in the Ceph mgr (state on the storage, so it survives the
// controller) and answers Pending until they are done; then the snapshot goes.
func TestRBDRealDeleteSnapshotFlattensInTheMgr(t *testing.T) {
	l := newLocal(t)
	tenant := l.tenant(t, "flat")
	ctl := l.controller(t)
	ctl.SetTaskWait(0) // answer Pending at once, however fast the mgr flattens
	src, err := ctl.CreateVolume(minute(t), &backend.VolumeRequest{Name: "pvc-flat-src", Tenant: tenant, RequiredBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l.fill(t, spec(src), 200)
	snap, err := ctl.CreateSnapshot(minute(t), src.ID, "snap-flat", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clone, err := ctl.CreateVolume(minute(t), &backend.VolumeRequest{Name: "pvc-flat-clone", Tenant: tenant, RequiredBytes: 256 << 20, SourceSnapshot: &snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	want := l.digest(t, spec(clone))
	err = ctl.DeleteSnapshot(minute(t), snap.ID, nil)
	if backend.CodeOf(err) != backend.Pending {
		t.Fatalf("DeleteSnapshot with a clone of 200 MiB: %v (code %v), want Pending while the mgr flattens", err, backend.CodeOf(err))
	}
	if tasks := l.tasks(t, tenant); len(tasks) == 0 && hasParent(l.cli(t, "rbd", "info", spec(clone))) {
		t.Fatalf("no flatten queued in the mgr for %s", spec(clone))
	}
	// A new controller (the old one died) finishes the delete once the mgr is done.
	ctl2 := l.controller(t)
	eventually(t, 2*time.Minute, "DeleteSnapshot succeeds", func() error { return ctl2.DeleteSnapshot(minute(t), snap.ID, nil) })
	if info := l.cli(t, "rbd", "info", spec(clone)); hasParent(info) {
		t.Fatalf("clone still has a parent:\n%s", info)
	}
	if got := l.digest(t, spec(clone)); got != want {
		t.Fatal("the flattened clone's data differs from the clone's before")
	}
	for _, v := range []*backend.Volume{clone, src} {
		if err := ctl2.DeleteVolume(minute(t), v.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// A clone of a volume is flattened by the mgr, not by the request: CreateVolume answers
// Pending until it is, and a new controller finishes it and drops the temporary snapshot.
func TestRBDRealCloneFromVolumeFlattensInTheMgr(t *testing.T) {
	l := newLocal(t)
	tenant := l.tenant(t, "vclone")
	ctl := l.controller(t)
	ctl.SetTaskWait(0) // answer Pending at once, however fast the mgr flattens
	src, err := ctl.CreateVolume(minute(t), &backend.VolumeRequest{Name: "pvc-vc-src", Tenant: tenant, RequiredBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l.fill(t, spec(src), 200)
	want := l.digest(t, spec(src))
	req := &backend.VolumeRequest{Name: "pvc-vc-clone", Tenant: tenant, RequiredBytes: 256 << 20, SourceVolume: &src.ID}
	_, err = ctl.CreateVolume(minute(t), req)
	if backend.CodeOf(err) != backend.Pending {
		t.Fatalf("CreateVolume from a volume of 200 MiB: %v (code %v), want Pending while the mgr flattens", err, backend.CodeOf(err))
	}
	ctl2 := l.controller(t)
	var clone *backend.Volume
	eventually(t, 2*time.Minute, "CreateVolume of the clone succeeds", func() (err error) {
		clone, err = ctl2.CreateVolume(minute(t), req)
		return err
	})
	if info := l.cli(t, "rbd", "info", spec(clone)); hasParent(info) {
		t.Fatalf("clone of a volume still has a parent:\n%s", info)
	}
	if snaps := l.cli(t, "rbd", "snap", "ls", "--all", spec(src)); strings.Contains(snaps, "csi-tmp-") {
		t.Fatalf("temporary snapshot left on the source:\n%s", snaps)
	}
	if l.digest(t, spec(clone)) != want {
		t.Fatal("clone data differs from the source")
	}
	for _, v := range []*backend.Volume{clone, src} {
		if err := ctl2.DeleteVolume(minute(t), v.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

var removing = regexp.MustCompile(`Removing image: (\d+)%`)

// imageObjects counts the RADOS objects left of an image in a namespace: its id, header
// and data objects, and its trash entry.
func (l *local) imageObjects(t *testing.T, ns, image string) []string {
	t.Helper()
	var left []string
	for _, o := range strings.Fields(l.cli(t, "rados", "-p", "rbd", "--namespace", ns, "ls")) {
		if strings.HasPrefix(o, "rbd_data.") || strings.HasPrefix(o, "rbd_header.") || o == "rbd_id."+image {
			left = append(left, o)
		}
	}
	if strings.Contains(l.cli(t, "rbd", "ls", "rbd/"+ns), image) {
		left = append(left, "directory entry "+image)
	}
	if tr := l.cli(t, "rbd", "trash", "ls", "--all", "rbd/"+ns); strings.Contains(tr, image) {
		left = append(left, "trash entry "+strings.TrimSpace(tr))
	}
	return left
}

// A controller killed while librbd removes an image leaves it half removed; the CO's
// retry of DeleteVolume must finish the job, not report success over the remains.
func TestRBDRealInterruptedDeleteLeavesNothing(t *testing.T) {
	l := newLocal(t)
	tenant := l.tenant(t, "irm")
	ctl := l.controller(t)
	v, err := ctl.CreateVolume(minute(t), &backend.VolumeRequest{Name: "pvc-irm", Tenant: tenant, RequiredBytes: 20 << 30,
		Parameters: map[string]string{backend.ParamBackend: "rbd-life", rbd.ParamImageFeatures: "layering"}})
	if err != nil {
		t.Fatal(err)
	}
	l.fill(t, spec(v), 40)
	// The delete the killed controller was running: librbd's remove, cut half way.
	rm := exec.Command("rbd", "-c", l.conf, "rm", spec(v))
	stderr, _ := rm.StderrPipe()
	if err := rm.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := strings.Index(string(data), "..."); i >= 0 {
			return i + 3, data[:i], nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		if m := removing.FindStringSubmatch(sc.Text()); m != nil {
			if p, _ := strconv.Atoi(m[1]); p >= 30 {
				break
			}
		}
	}
	rm.Process.Kill()
	rm.Wait()
	t.Logf("killed librbd's remove; left: %v", l.imageObjects(t, tenant, v.Context["imageName"]))
	// The CO retries DeleteVolume until it succeeds (the killed client's watch lingers 30 s).
	ctl2 := l.controller(t)
	eventually(t, 2*time.Minute, "DeleteVolume succeeds", func() error { return ctl2.DeleteVolume(minute(t), v.ID, nil) })
	eventually(t, 3*time.Minute, "nothing of the image is left", func() error {
		if left := l.imageObjects(t, tenant, v.Context["imageName"]); len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
}

// librbd's trash move leaves the image it opened open when a read after the open fails
// (Ceph's Trash::move returns mirror_image_get's error without closing the image). An OSD
// frozen past the op timeout made that read fail in the fault test; a corrupt mirroring
// record makes it fail here, every time. The controller's own client then watches the
// image with no call of ours on it, for as long as the client lives, and the mgr's purge
// fails busy on it. The CO's retries must still end with the image deleted and purged.
func TestRBDRealDeleteAfterLibrbdLeftTheImageOpen(t *testing.T) {
	l := newLocal(t)
	tenant := l.tenant(t, "leak")
	ctl := l.controller(t)
	v, err := ctl.CreateVolume(minute(t), &backend.VolumeRequest{Name: "pvc-leak", Tenant: tenant, RequiredBytes: 64 << 20,
		Parameters: map[string]string{backend.ParamBackend: "rbd-life"}})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(l.cli(t, "rbd", "info", "--format", "json", spec(v))), &info); err != nil || info.ID == "" {
		t.Fatalf("rbd info %s: %v", spec(v), err)
	}
	mirrorKey := []string{"rados", "-p", "rbd", "--namespace", tenant}
	l.cli(t, mirrorKey[0], append(mirrorKey[1:], "setomapval", "rbd_mirroring", "image_"+info.ID, "corrupt")...)
	err = ctl.DeleteVolume(minute(t), v.ID, nil)
	if err == nil {
		t.Fatal("the trash move succeeded over a corrupt mirroring record: the test no longer makes librbd fail after its open")
	}
	t.Logf("delete with a corrupt mirroring record: %v", err)
	status := l.cli(t, "rbd", "status", spec(v))
	if !strings.Contains(status, "watcher=") {
		t.Fatalf("the failed trash move left no watch; librbd no longer leaves its open behind? %s", status)
	}
	t.Logf("left open by the failed trash move: %s", strings.TrimSpace(status))
	l.cli(t, mirrorKey[0], append(mirrorKey[1:], "rmomapkey", "rbd_mirroring", "image_"+info.ID)...)

	seen := map[backend.Code]int{}
	eventually(t, 3*time.Minute, "DeleteVolume succeeds", func() error {
		err := ctl.DeleteVolume(minute(t), v.ID, nil)
		if err != nil {
			seen[backend.CodeOf(err)]++
			time.Sleep(time.Second) // a CO backs off
		}
		return err
	})
	t.Logf("errors before the delete succeeded: %v", seen)
	if n := seen[backend.FailedPrecondition]; n > 0 {
		// A CO does not retry FAILED_PRECONDITION: the watch is the controller's old client's.
		t.Errorf("%d deletes answered FAILED_PRECONDITION while the replaced client's watch lingered; want UNAVAILABLE", n)
	}
	eventually(t, 3*time.Minute, "nothing of the image is left", func() error {
		if left := l.imageObjects(t, tenant, v.Context["imageName"]); len(left) > 0 {
			return fmt.Errorf("left: %v; %s", left, l.cli(t, "ceph", "rbd", "task", "list"))
		}
		return nil
	})
}

// A controller killed after moving an image to the trash, before queueing its purge, leaves
// a trash entry; the next controller start collects it.
func TestRBDRealControllerStartCollectsTrash(t *testing.T) {
	l := newLocal(t)
	tenant := l.tenant(t, "gc")
	ctl := l.controller(t)
	v, err := ctl.CreateVolume(minute(t), &backend.VolumeRequest{Name: "pvc-gc", Tenant: tenant, RequiredBytes: 64 << 20,
		Parameters: map[string]string{backend.ParamBackend: "rbd-life"}})
	if err != nil {
		t.Fatal(err)
	}
	l.cli(t, "rbd", "trash", "mv", spec(v))
	// An admin sees it (shipholdctl leftovers) before anything acts on it.
	left, err := ctl.Leftovers(minute(t))
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, lo := range left {
		listed = listed || lo.Tenant == tenant && lo.Kind == "trash entry" && strings.Contains(lo.Name, v.Context["imageName"]) && lo.State == "purge not queued"
	}
	if !listed {
		t.Fatalf("Leftovers does not show the trash entry of %s: %+v", v.Context["imageName"], left)
	}
	harness.StartDriver(t, &config.Config{Backends: []config.Backend{l.backend}}, driver.ModeController)
	eventually(t, 2*time.Minute, "the trash entry is purged", func() error {
		if left := l.imageObjects(t, tenant, v.Context["imageName"]); len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
}

// A clone whose source is over limit_bytes is refused before the clone is made.
func TestRBDRealCloneOverLimitCreatesNothing(t *testing.T) {
	l := newLocal(t)
	tenant := l.tenant(t, "lim")
	ctl := l.controller(t)
	src, err := ctl.CreateVolume(minute(t), &backend.VolumeRequest{Name: "pvc-lim-src", Tenant: tenant, RequiredBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := ctl.CreateSnapshot(minute(t), src.ID, "snap-lim", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]*backend.VolumeRequest{
		"from snapshot": {Name: "pvc-lim-s", Tenant: tenant, RequiredBytes: 16 << 20, LimitBytes: 32 << 20, SourceSnapshot: &snap.ID},
		"from volume":   {Name: "pvc-lim-v", Tenant: tenant, RequiredBytes: 16 << 20, LimitBytes: 32 << 20, SourceVolume: &src.ID},
	} {
		if _, err := ctl.CreateVolume(minute(t), req); backend.CodeOf(err) != backend.OutOfRange {
			t.Fatalf("%s over the limit: %v, want OutOfRange", name, err)
		}
		if ls := strings.Fields(l.cli(t, "rbd", "ls", "rbd/"+tenant)); len(ls) != 1 {
			t.Fatalf("%s: refused create left images %v", name, ls)
		}
		if snaps := l.cli(t, "rbd", "snap", "ls", "--all", spec(src)); strings.Contains(snaps, "csi-tmp-") {
			t.Fatalf("%s: refused create left a temporary snapshot:\n%s", name, snaps)
		}
	}
	if err := ctl.DeleteSnapshot(minute(t), snap.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteVolume(minute(t), src.ID, nil); err != nil {
		t.Fatal(err)
	}
}

// whilePending calls fn again while it answers Pending (the mgr still flattening), as a CO
// retries ABORTED.
func whilePending(fn func() error) error {
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		err := fn()
		if backend.CodeOf(err) != backend.Pending || time.Now().After(deadline) {
			return err
		}
	}
}
