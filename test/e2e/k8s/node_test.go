package k8s

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/test/harness"
)

// TestStaleNode: what a failed run leaves below the kubelet directory (a pod's volume mount,
// a loop device on a staged image file, a mount daemon serving it) is found and removed.
func TestStaleNode(t *testing.T) {
	harness.RequireRoot(t, "mounts and loop devices")
	harness.RequireCommand(t, "losetup", "apt-get install util-linux")
	harness.RequireCommand(t, "iptables", "apt-get install iptables")
	kubelet := t.TempDir()
	vol := filepath.Join(kubelet, "pods", "uid-1", "volumes", "kubernetes.io~csi", "pvc-1", "mount")
	staged := filepath.Join(kubelet, "plugins", "kubernetes.io", "csi", "shiphold.csi.io", "h", "globalmount")
	for _, d := range []string{vol, staged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount("tmpfs", vol, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(vol, syscall.MNT_DETACH) })
	img := filepath.Join(staged, "image")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	// A "ceph-fuse" naming the staged directory: sleep, with that argv[0].
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(sleep, "3600")
	daemon.Args[0] = filepath.Join(staged, "ceph-fuse")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	// The chain a kubelet makes and leaves behind.
	if out, err := exec.Command("iptables", "-w", "5", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY").CombinedOutput(); err != nil && !strings.Contains(string(out), "exists") {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	exited := make(chan struct{})
	go func() { _ = daemon.Wait(); close(exited) }()
	t.Cleanup(func() { _ = daemon.Process.Kill() })

	st, err := FindStaleNode(kubelet)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Mounts) != 1 || st.Mounts[0] != vol || len(st.Loops) != 1 || st.Loops[0] != dev ||
		len(st.Daemons) != 1 || st.Daemons[0] != daemon.Process.Pid || len(st.Shims) != 0 ||
		!slices.Contains(st.Chains, "iptables mangle KUBE-KUBELET-CANARY") {
		t.Fatalf("found %+v, want mount %s, loop device %s, daemon %d, chain KUBE-KUBELET-CANARY", st, vol, dev, daemon.Process.Pid)
	}
	if err := st.Clean(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the mount daemon still runs after Clean")
	}
	after, err := FindStaleNode(kubelet)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Empty() {
		t.Fatalf("still there after Clean: %s", after)
	}
	if b, err := os.ReadFile("/sys/block/" + filepath.Base(dev) + "/loop/backing_file"); err == nil {
		t.Fatalf("%s still backed by %s", dev, b)
	}
}
