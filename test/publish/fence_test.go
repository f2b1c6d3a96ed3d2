package publish

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
)

var watcherAddr = regexp.MustCompile(`watcher=(\S+)`)

// A forced detach is a ControllerUnpublish of a volume's last node while that node still
// has the image open (it never unstaged): its Ceph client is blocklisted, its writes fail,
// and only then may another node publish the volume read-write. A normal detach (nothing
// open any more) blocklists nobody. The controller runs as a user with the caps
// deploy/README.md documents, which also clones through the mgr and deletes.
func TestRBDForcedDetachFencesOldClient(t *testing.T) {
	be := harness.RBDBackend(t, "rbd")
	user := documentedUser(t)
	be.Section.(*rbd.Config).Credentials = user
	d := harness.StartDriver(t, &config.Config{Backends: []config.Backend{be}}, driver.ModeController)
	ctrl := d.Controller()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rwo := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
	v, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-fence", CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{rwo}, Parameters: map[string]string{"backend": "rbd", "csi.storage.k8s.io/pvc/namespace": "fencetest"}})
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	defer func() {
		if !deleted {
			ctrl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.Volume.VolumeId})
		}
	}()
	vctx := v.Volume.VolumeContext
	spec := vctx["pool"] + "/" + vctx["radosNamespace"] + "/" + vctx["imageName"]
	publish := func(node string) error {
		_, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.Volume.VolumeId, NodeId: node, VolumeCapability: rwo, VolumeContext: vctx})
		return err
	}
	unpublish := func(node string) {
		t.Helper()
		if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.Volume.VolumeId, NodeId: node}); err != nil {
			t.Fatalf("unpublish %s: %v", node, err)
		}
	}
	if err := publish(node1); err != nil {
		t.Fatal(err)
	}

	// node-1's client: a writer that keeps the image open, as a mapped device does.
	conf := filepath.Join(harness.CephDir(), "ceph.conf")
	writer := exec.Command("rbd", "-c", conf, "bench", "--io-type", "write", "--io-size", "4K", "--io-threads", "1", "--io-total", "100G", "--io-pattern", "rand", spec)
	var out bytes.Buffer
	writer.Stdout, writer.Stderr = &out, &out
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- writer.Wait() }()
	defer writer.Process.Kill()
	addr := ""
	for deadline := time.Now().Add(30 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if m := watcherAddr.FindStringSubmatch(cephCLI(t, "rbd", "status", spec)); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("the writer never showed up as a watcher of %s:\n%s", spec, out.String())
	}
	t.Cleanup(func() { exec.Command("ceph", "-c", conf, "osd", "blocklist", "rm", addr).Run() })

	if err := publish(node2); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("publish to node-2 while node-1 holds the volume: %v, want FAILED_PRECONDITION", err)
	}
	// Kubernetes gave up on node-1 (force detach): node-1 still has the image open.
	unpublish(node1)
	if bl := cephCLI(t, "ceph", "osd", "blocklist", "ls"); !strings.Contains(bl, addr) {
		t.Fatalf("forced detach left node-1's client %s off the blocklist:\n%s", addr, bl)
	}
	select {
	case err := <-exited:
		t.Logf("node-1's writer stopped after fencing: %v: %s", err, lastLine(out.String()))
	case <-time.After(30 * time.Second):
		t.Fatalf("node-1's writer still runs 30 s after fencing:\n%s", out.String())
	}
	if err := publish(node2); err != nil {
		t.Fatalf("publish to node-2 after node-1 was fenced: %v", err)
	}
	// The blocklist is cluster-wide and other packages' tests add to it meanwhile, so what
	// the controller did is read from the monitors' audit of its own user's commands.
	fenced := blocklistsBy(t, user)
	if len(fenced) != 1 || !strings.Contains(fenced[0], addr) {
		t.Fatalf("the forced detach should have sent one blocklist of %s, the audit shows:\n%s", addr, strings.Join(fenced, "\n"))
	}
	unpublish(node2) // a normal detach: nothing has the image open
	if after := blocklistsBy(t, user); len(after) != len(fenced) {
		t.Fatalf("a normal detach blocklisted someone:\n%s", strings.Join(after[len(fenced):], "\n"))
	}

	// A copy of the volume (flattened by the mgr, ABORTED meanwhile), then both deleted
	// (moved to the trash, purged by the mgr).
	var clone *csi.CreateVolumeResponse
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.Volume.VolumeId}}}
	for clone == nil {
		clone, err = ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-fence-copy", CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{rwo}, VolumeContentSource: src, Parameters: map[string]string{"backend": "rbd", "csi.storage.k8s.io/pvc/namespace": "fencetest"}})
		if status.Code(err) != codes.Aborted && err != nil {
			t.Fatalf("copy the volume: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, id := range []string{clone.Volume.VolumeId, v.Volume.VolumeId} {
		if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	deleted = true
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		ns := vctx["pool"] + "/" + vctx["radosNamespace"]
		left := cephCLI(t, "rbd", "ls", "--long", ns) + cephCLI(t, "rbd", "trash", "ls", ns)
		if strings.TrimSpace(left) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted volumes still on the storage after a minute:\n%s", left)
		}
	}
}

// blocklistsBy returns the `osd blocklist` commands the monitors took from user, as the
// audit channel of the cluster log file records them. `ceph log last` keeps only the last
// 50 entries, too few beside other packages' tests, so the file is read. A marker logged
// first and read back as finished means every command sent before it is in the file.
func blocklistsBy(t *testing.T, user ceph.DefaultCredentials) []string {
	t.Helper()
	marker := fmt.Sprintf("shiphold fence test mark %d", time.Now().UnixNano())
	cephCLI(t, "ceph", "log", marker)
	file := filepath.Join(harness.CephDir(), "log", "cluster.log")
	entity := "entity='client." + user.UserID + "'"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		clog, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read the cluster log: %v", err)
		}
		var cmds []string
		marked := false
		for _, line := range strings.Split(string(clog), "\n") {
			switch {
			case strings.Contains(line, marker) && strings.HasSuffix(line, "': finished"):
				marked = true
			case strings.Contains(line, entity) && strings.Contains(line, `"osd blocklist"`) && strings.Contains(line, `"add"`) && strings.HasSuffix(line, ": dispatch"):
				cmds = append(cmds, line)
			}
		}
		if marked {
			return cmds
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mark %q never reached %s as finished", marker, file)
		}
	}
}

// documentedCaps is the documented command that makes the RBD controller's cephx user.
var documentedCaps = regexp.MustCompile(`ceph auth get-or-create client\.shiphold-rbd mon '([^']*)' osd '([^']*)' mgr '([^']*)'`)

// documentedUser makes a cephx user with the caps deploy/README.md gives the RBD
// controller's user, and returns credentials for it.
func documentedUser(t *testing.T) ceph.DefaultCredentials {
	t.Helper()
	doc, err := os.ReadFile("../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := documentedCaps.FindStringSubmatch(string(doc))
	if m == nil {
		t.Fatal("deploy/README.md documents no `ceph auth get-or-create client.shiphold-rbd mon ... osd ... mgr ...` line")
	}
	// A new name each run: the audit (see blocklistsBy) keeps earlier runs' commands.
	user := fmt.Sprintf("shiphold-rbd-test-%d", time.Now().UnixNano())
	keyring := filepath.Join(t.TempDir(), "keyring")
	cephCLI(t, "ceph", "auth", "get-or-create", "client."+user, "mon", m[1], "osd", m[2], "mgr", m[3], "-o", keyring)
	t.Cleanup(func() {
		exec.Command("ceph", "-c", filepath.Join(harness.CephDir(), "ceph.conf"), "auth", "rm", "client."+user).Run()
	})
	return ceph.DefaultCredentials{UserID: user, KeyringFile: keyring}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
