package k8s

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

var execLookPath = exec.LookPath

const podNS = "tenant-a"

// podBackend is one line of the pod test: a backend and a volume mode.
type podBackend struct {
	*e2eBackend
	label  string // rbd, rbd-block, cephfs, isilon
	block  bool
	access string
	shared bool // two pods write at once (CephFS, Isilon, RBD block RWX)
}

// podBackends lists the lines of the pod test; $SHIPHOLD_E2E_POD_BACKENDS (e.g. "cephfs rbd")
// keeps only those, for a quicker look at one backend.
func podBackends(bs []*e2eBackend) []*podBackend {
	all := allPodBackends(bs)
	only := strings.Fields(os.Getenv("SHIPHOLD_E2E_POD_BACKENDS"))
	if len(only) == 0 {
		return all
	}
	var out []*podBackend
	for _, b := range all {
		if slices.Contains(only, b.label) {
			out = append(out, b)
		}
	}
	return out
}

func allPodBackends(bs []*e2eBackend) []*podBackend {
	var out []*podBackend
	for _, b := range bs {
		switch b.label {
		case "rbd":
			out = append(out, &podBackend{e2eBackend: b, label: "rbd", access: "ReadWriteOnce"},
				&podBackend{e2eBackend: b, label: "rbd-block", block: true, access: "ReadWriteMany", shared: true})
		default:
			out = append(out, &podBackend{e2eBackend: b, label: b.label, access: "ReadWriteMany", shared: true})
		}
	}
	return out
}

type podEnv struct {
	k      *kube
	node   *Node
	plugin pluginRunner
	t      *testing.T
	emit   func(line string) // a result line that is not "<step>: ok"
	// callLogs are the controller and node plugins' logs (their "Call done" lines).
	callLogs func(ctx context.Context) []byte
}

// podVol is what one backend's steps made.
type podVol struct {
	b          *podBackend
	data, pv   string // the PVC the steps share and its PV
	hash       string
	pods, pvcs []string
	snaps      []string
	written    map[int]string // slot -> record the volume must hold
}

// podSteps is $SHIPHOLD_E2E_POD_STEPS (e.g. "latency"): only those steps run, for a quicker
// look at one; empty (make e2e) runs every step. A step needs the steps before it but
// latency, which needs none.
func podSteps() []string { return strings.Fields(os.Getenv("SHIPHOLD_E2E_POD_STEPS")) }

func (e *podEnv) run(ctx context.Context, b *podBackend, report func(label, step string, err error, note string) bool) {
	v := &podVol{b: b, data: "data-" + b.label, written: map[int]string{}}
	var blocked, firstFailed string
	only := podSteps()
	step := func(name string, f func() (string, error)) {
		if len(only) > 0 && !slices.Contains(only, name) {
			return
		}
		if blocked != "" {
			report(b.label, name, fmt.Errorf("not run: %s failed", blocked), "")
			return
		}
		start := time.Now()
		note, err := f()
		e.t.Logf("%s %s took %s", b.label, name, time.Since(start).Round(time.Millisecond))
		if !report(b.label, name, err, note) {
			blocked = name
			if firstFailed == "" {
				firstFailed = name
			}
		}
	}
	step("running", func() (string, error) { return e.stepRunning(ctx, v) })
	step("restarted", func() (string, error) { return "", e.stepRestarted(ctx, v) })
	if b.shared {
		step("shared", func() (string, error) { return "", e.stepShared(ctx, v) })
	}
	step("readonly", func() (string, error) { return e.stepReadOnly(ctx, v) })
	step("expanded", func() (string, error) { return e.stepExpanded(ctx, v) })
	step("restored", func() (string, error) { return "", e.stepRestored(ctx, v) })
	step("stats", func() (string, error) { return e.stepStats(ctx, v) })
	step("plugin-restart", func() (string, error) { return e.stepPluginRestart(ctx, v) })
	blocked = ""
	step("deleted", func() (string, error) { return "", e.stepDeleted(ctx, v) })
	if firstFailed == "running" {
		report(b.label, "latency", errors.New("not run: running failed"), "")
		return
	}
	if len(only) > 0 && !slices.Contains(only, "latency") {
		return
	}
	line, err := e.latency(ctx, v.b, 20)
	if err != nil {
		report(b.label, "latency", err, "")
	} else {
		for _, l := range strings.Split(line, "\n") {
			e.emit(l)
		}
	}
}

// --- the steps -----------------------------------------------------------------------

func (e *podEnv) stepRunning(ctx context.Context, v *podVol) (string, error) {
	if err := e.createPVC(ctx, v, v.data, v.b.access, e2eSize, ""); err != nil {
		return "", err
	}
	pv, err := waitPVCBound(ctx, e.k, podNS, v.data, 3*time.Minute)
	if err != nil {
		return "", err
	}
	v.pv = pv
	if v.hash, err = checkPV(ctx, e.k, v.b.e2eBackend, podNS, pv); err != nil {
		return "", err
	}
	if err := e.startPod(ctx, v, "w1", v.data, false, idleScript); err != nil {
		return "", err
	}
	if err := e.writeSlot(ctx, v, "w1", 0, fmt.Sprintf("running %s at %s", v.b.label, time.Now().Format(time.RFC3339Nano))); err != nil {
		return "", err
	}
	// The attach-detach controller attached it: the VolumeAttachment it made, and the grant on
	// the storage.
	va, err := vaOf(ctx, e.k, v.pv)
	if err != nil {
		return "", err
	}
	if err := waitAttached(ctx, e.k, v.b.e2eBackend, va, podNS, v.hash); err != nil {
		return "", err
	}
	if v.b.label == "isilon" {
		return "mounted through the NFS stand-in: this kernel has no NFS client", nil
	}
	return "", nil
}

func (e *podEnv) stepRestarted(ctx context.Context, v *podVol) error {
	if err := e.deletePod(ctx, "w1"); err != nil {
		return err
	}
	if err := e.startPod(ctx, v, "w1", v.data, false, idleScript); err != nil {
		return err
	}
	return e.checkSlots(ctx, v, "w1")
}

func (e *podEnv) stepShared(ctx context.Context, v *podVol) error {
	if err := e.startPod(ctx, v, "w2", v.data, false, idleScript); err != nil {
		return err
	}
	if err := e.writeSlot(ctx, v, "w1", 1, "written by w1 "+time.Now().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	if err := e.writeSlot(ctx, v, "w2", 2, "written by w2 "+time.Now().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	// each reads the other's
	for pod, slot := range map[string]int{"w1": 2, "w2": 1} {
		got, err := e.readSlot(ctx, v, pod, slot)
		if err != nil {
			return err
		}
		if got != v.written[slot] {
			return fmt.Errorf("pod %s reads %q in slot %d, the other pod wrote %q", pod, got, slot, v.written[slot])
		}
	}
	return e.deletePod(ctx, "w2")
}

// stepReadOnly: a ReadOnlyMany clone of the volume, in a pod that mounts it read-only.
func (e *podEnv) stepReadOnly(ctx context.Context, v *podVol) (string, error) {
	ro := "ro-" + v.b.label
	if err := e.createPVC(ctx, v, ro, "ReadOnlyMany", e2eSize, "PersistentVolumeClaim:"+v.data); err != nil {
		return "", err
	}
	pv, err := waitPVCBound(ctx, e.k, podNS, ro, 4*time.Minute)
	if err != nil {
		return "", err
	}
	hash, err := checkPV(ctx, e.k, v.b.e2eBackend, podNS, pv)
	if err != nil {
		return "", err
	}
	if err := e.startPod(ctx, v, "r1", ro, true, idleScript); err != nil {
		return "", err
	}
	got, err := e.readSlot(ctx, v, "r1", 0)
	if err != nil {
		return "", err
	}
	if got != v.written[0] {
		return "", fmt.Errorf("the read-only clone holds %q in slot 0, want %q", got, v.written[0])
	}
	if out, err := e.exec(ctx, "r1", writeScript(v.b.block), "9", "must not land"); err == nil {
		return "", fmt.Errorf("pod r1 wrote into its ReadOnlyMany volume (%s)", out)
	}
	mode, err := v.b.attachment(ctx, podNS, hash)
	if err != nil {
		return "", err
	}
	if mode != "ro" {
		return "", fmt.Errorf("the storage records %q for the ReadOnlyMany volume's attachment, want \"ro\"", mode)
	}
	note := "storage grant ro"
	if v.b.kind == "rbd" {
		dev, ro, err := loopOf("csi-vol-" + hash)
		if err != nil {
			return "", err
		}
		if !ro {
			return "", fmt.Errorf("the rbd-fuse loop device %s of the ReadOnlyMany volume is writable", dev)
		}
		note += ", loop device " + dev + " read-only"
	}
	return note, e.deletePod(ctx, "r1")
}

func (e *podEnv) stepExpanded(ctx context.Context, v *podVol) (string, error) {
	patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, e2eBigSize)
	if _, err := e.k.run(ctx, "patch", "pvc", "-n", podNS, v.data, "--type=merge", "-p", patch); err != nil {
		return "", err
	}
	offline := v.b.kind == "rbd" && !v.b.block && !hasCapSysResource()
	if offline {
		// Online ext4 growth needs CAP_SYS_RESOURCE, which this machine withholds from every
		// process: once the image is grown, a restarted pod gets it grown at the next stage.
		err := poll(ctx, 4*time.Minute, func() (bool, string, error) {
			out, err := e.k.run(ctx, "get", "pv", v.pv, "-o", "jsonpath={.spec.capacity.storage}")
			return err == nil && string(out) == e2eBigSize, "PV capacity " + string(out), nil
		})
		if err != nil {
			return "", err
		}
		if err := e.deletePod(ctx, "w1"); err != nil {
			return "", err
		}
		if err := e.startPod(ctx, v, "w1", v.data, false, idleScript); err != nil {
			return "", err
		}
	}
	var size int64
	var last string
	err := poll(ctx, 4*time.Minute, func() (bool, string, error) {
		script := `df -k /data | tail -1 | awk '{print $2 * 1024}'`
		if v.b.block {
			script = `blockdev --getsize64 /dev/xvda`
		}
		out, err := e.exec(ctx, "w1", script)
		if err != nil {
			return false, err.Error(), nil
		}
		size, err = strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			return false, fmt.Sprintf("size %q", out), nil
		}
		last = fmt.Sprintf("the pod sees %d bytes", size)
		if v.b.label == "isilon" {
			return true, "", nil
		}
		// ext4 keeps a few percent for itself: more than 1.5 GiB is the grown filesystem
		return size > 3*gib/2, last + lastEvent(ctx, e.k, podNS, v.data), nil
	})
	if err != nil {
		return "", fmt.Errorf("%s to %s: %w", v.data, e2eBigSize, err)
	}
	if got, err := v.b.volume(ctx, podNS, v.hash); err != nil || got != 2*gib {
		return "", fmt.Errorf("the backend holds %d bytes after expansion (%v), want %d", got, err, 2*gib)
	}
	if err := e.checkSlots(ctx, v, "w1"); err != nil {
		return "", fmt.Errorf("after expansion: %w", err)
	}
	if v.b.label == "isilon" {
		return fmt.Sprintf("df shows the simulator's filesystem through the stand-in (%d bytes); the export's quota is 2Gi", size), nil
	}
	if offline {
		return fmt.Sprintf("the pod sees %d bytes; grown at the pod's restart: online ext4 growth needs CAP_SYS_RESOURCE, which this machine withholds", size), nil
	}
	return fmt.Sprintf("the pod sees %d bytes", size), nil
}

// hasCapSysResource reports whether this process (and so the node plugin it starts) holds
// CAP_SYS_RESOURCE.
func hasCapSysResource() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<24) != 0
		}
	}
	return false
}

func (e *podEnv) stepRestored(ctx context.Context, v *podVol) error {
	snap := "snap-" + v.b.label
	if _, err := e.k.apply(ctx, fmt.Sprintf(`apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: %s, namespace: %s}
spec:
  volumeSnapshotClassName: %s
  source: {persistentVolumeClaimName: %s}
`, snap, podNS, v.b.vsc, v.data)); err != nil {
		return err
	}
	v.snaps = append(v.snaps, snap)
	err := poll(ctx, 4*time.Minute, func() (bool, string, error) {
		out, err := e.k.run(ctx, "get", "volumesnapshot", "-n", podNS, snap, "-o", "jsonpath={.status.readyToUse}")
		if err != nil {
			return false, err.Error(), nil
		}
		return string(out) == "true", "readyToUse " + string(out) + lastEvent(ctx, e.k, podNS, snap), nil
	})
	if err != nil {
		return fmt.Errorf("VolumeSnapshot %s: %w", snap, err)
	}
	rest := "restored-" + v.b.label
	if err := e.createPVC(ctx, v, rest, v.b.access, e2eBigSize, "VolumeSnapshot:"+snap); err != nil {
		return err
	}
	if _, err := waitPVCBound(ctx, e.k, podNS, rest, 4*time.Minute); err != nil {
		return err
	}
	if err := e.startPod(ctx, v, "p-restored", rest, false, idleScript); err != nil {
		return err
	}
	return e.checkSlots(ctx, v, "p-restored")
}

// stepStats reads the kubelet's kubelet_volume_stats_* for the test's PVCs.
func (e *podEnv) stepStats(ctx context.Context, v *podVol) (string, error) {
	want := []string{v.data, "restored-" + v.b.label}
	var got map[string]map[string]float64
	err := poll(ctx, 90*time.Second, func() (bool, string, error) {
		var err error
		got, err = e.node.VolumeStats(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		for _, pvc := range want {
			if _, ok := got[pvc]; !ok {
				return v.b.block, fmt.Sprintf("no kubelet_volume_stats for %s yet (have %v)", pvc, keys(got)), nil
			}
		}
		return true, "", nil
	})
	if err != nil {
		return "", err
	}
	var notes []string
	for _, pvc := range want {
		m, ok := got[pvc]
		if !ok {
			notes = append(notes, pvc+": none (block volume)")
			continue
		}
		if err := saneStats(m); err != nil {
			return "", fmt.Errorf("%s: %w (%v)", pvc, err, m)
		}
		s := fmt.Sprintf("%s: capacity %.0f used %.0f", pvc, m["capacity_bytes"], m["used_bytes"])
		if _, ok := m["inodes"]; ok {
			s += fmt.Sprintf(" inodes %.0f/%.0f", m["inodes_used"], m["inodes"])
		} else {
			s += " no inode figures"
		}
		notes = append(notes, s)
	}
	return strings.Join(notes, "; "), nil
}

func saneStats(m map[string]float64) error {
	for k, x := range m {
		if x < 0 {
			return fmt.Errorf("%s is negative", k)
		}
	}
	if c, ok := m["capacity_bytes"]; !ok || c <= 0 {
		return errors.New("no capacity")
	}
	if m["used_bytes"] > m["capacity_bytes"] || m["available_bytes"] > m["capacity_bytes"] {
		return errors.New("used or available above capacity")
	}
	if in, ok := m["inodes"]; ok && (m["inodes_used"] > in || m["inodes_free"] > in) {
		return errors.New("inodes used or free above the inode total")
	}
	return nil
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- pods ------------------------------------------------------------------------------

// idleScript keeps a pod running; busybox's sh ignores SIGTERM, so it is trapped.
const idleScript = `trap 'exit 0' TERM; while :; do sleep 1; done`

func (e *podEnv) createPVC(ctx context.Context, v *podVol, name, access, size, source string) error {
	mode := "Filesystem"
	if v.b.block {
		mode = "Block"
	}
	ds := ""
	if kind, src, ok := strings.Cut(source, ":"); ok {
		group := "apiGroup: snapshot.storage.k8s.io, "
		if kind == "PersistentVolumeClaim" {
			group = ""
		}
		ds = fmt.Sprintf("  dataSource: {%skind: %s, name: %s}\n", group, kind, src)
	}
	_, err := e.k.apply(ctx, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: %s}
spec:
  storageClassName: %s
  accessModes: [%s]
  volumeMode: %s
  resources: {requests: {storage: %s}}
%s`, name, podNS, v.b.sc, access, mode, size, ds))
	if err == nil {
		v.pvcs = append(v.pvcs, name)
	}
	return err
}

func podYAML(name, pvc string, block, readOnly bool, script string, labels string) string {
	use := "volumeMounts: [{name: vol, mountPath: /data}]"
	if block {
		use = "volumeDevices: [{name: vol, devicePath: /dev/xvda}]"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: shiphold-e2e%s}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  restartPolicy: Never
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", %q]
    %s
  volumes:
  - name: vol
    persistentVolumeClaim: {claimName: %s, readOnly: %t}
`, name, podNS, labels, BusyboxImage, script, use, pvc, readOnly)
}

func (e *podEnv) startPod(ctx context.Context, v *podVol, name, pvc string, readOnly bool, script string) error {
	if _, err := e.k.apply(ctx, podYAML(name, pvc, v.b.block, readOnly, script, "")); err != nil {
		return err
	}
	v.pods = append(v.pods, name)
	return waitPodRunning(ctx, e.k, name, 3*time.Minute)
}

func waitPodRunning(ctx context.Context, k *kube, name string, timeout time.Duration) error {
	err := poll(ctx, timeout, func() (bool, string, error) {
		out, err := k.run(ctx, "get", "pod", "-n", podNS, name, "-o", "jsonpath={.status.phase}")
		if err != nil {
			return false, err.Error(), nil
		}
		if string(out) == "Failed" || string(out) == "Succeeded" {
			return false, "", fmt.Errorf("pod %s is %s%s", name, out, lastEvent(ctx, k, podNS, name))
		}
		return string(out) == "Running", "phase " + string(out) + lastEvent(ctx, k, podNS, name), nil
	})
	if err != nil {
		return fmt.Errorf("pod %s/%s not Running: %w", podNS, name, err)
	}
	return nil
}

func (e *podEnv) deletePod(ctx context.Context, name string) error {
	if _, err := e.k.run(ctx, "delete", "pod", "-n", podNS, name, "--ignore-not-found", "--wait=false"); err != nil {
		return err
	}
	return waitGone(ctx, e.k, 3*time.Minute, podNS, "pod", name)
}

// exec runs script in the pod's container with sh -c (args are $1...).
func (e *podEnv) exec(ctx context.Context, pod, script string, args ...string) ([]byte, error) {
	return e.k.run(ctx, append([]string{"exec", "-n", podNS, pod, "--", "sh", "-c", script, "sh"}, args...)...)
}

// A slot is a record a pod writes and reads back: a file of the volume, or a 4 KiB block of
// a block volume.
func writeScript(block bool) string {
	if block {
		return `printf '%s' "$2" | dd of=/dev/xvda bs=4096 seek=$1 count=1 conv=sync,notrunc,fsync 2>&1 >/dev/null | grep -v records; true; ` +
			`[ "$(dd if=/dev/xvda bs=4096 skip=$1 count=1 2>/dev/null | tr -d '\000')" = "$2" ]`
	}
	return `printf '%s' "$2" | dd of=/data/slot-$1 conv=fsync 2>/dev/null && [ "$(cat /data/slot-$1)" = "$2" ]`
}

func readScript(block bool) string {
	if block {
		return `dd if=/dev/xvda bs=4096 skip=$1 count=1 2>/dev/null | tr -d '\000'`
	}
	return `cat /data/slot-$1`
}

func (e *podEnv) writeSlot(ctx context.Context, v *podVol, pod string, slot int, rec string) error {
	if out, err := e.exec(ctx, pod, writeScript(v.b.block), strconv.Itoa(slot), rec); err != nil {
		return fmt.Errorf("pod %s writes slot %d: %w (%s)", pod, slot, err, out)
	}
	v.written[slot] = rec
	return nil
}

func (e *podEnv) readSlot(ctx context.Context, v *podVol, pod string, slot int) (string, error) {
	out, err := e.exec(ctx, pod, readScript(v.b.block), strconv.Itoa(slot))
	if err != nil {
		return "", fmt.Errorf("pod %s reads slot %d: %w", pod, slot, err)
	}
	return string(out), nil
}

// checkSlots requires every record written so far to read back in pod.
func (e *podEnv) checkSlots(ctx context.Context, v *podVol, pod string) error {
	for slot, want := range v.written {
		got, err := e.readSlot(ctx, v, pod, slot)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("pod %s reads %q in slot %d, want %q", pod, got, slot, want)
		}
	}
	return nil
}

// vaOf finds the VolumeAttachment the attach-detach controller made for pv on the node.
func vaOf(ctx context.Context, k *kube, pv string) (string, error) {
	type va struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
			Source   struct {
				PersistentVolumeName string `json:"persistentVolumeName"`
			} `json:"source"`
		} `json:"spec"`
	}
	vas, err := jsonList[va](ctx, k, "get", "volumeattachment")
	if err != nil {
		return "", err
	}
	for _, a := range vas {
		if a.Spec.Source.PersistentVolumeName == pv && a.Spec.NodeName == NodeName {
			return a.Metadata.Name, nil
		}
	}
	return "", fmt.Errorf("no VolumeAttachment of %s to %s", pv, NodeName)
}

// loopOf finds the loop device whose back-file is the rbd-fuse file of image and whether
// the kernel holds it read-only.
func loopOf(image string) (string, bool, error) {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || !strings.HasSuffix(strings.TrimSpace(string(data)), "/"+image) {
			continue
		}
		dir := filepath.Dir(filepath.Dir(f))
		ro, err := os.ReadFile(filepath.Join(dir, "ro"))
		if err != nil {
			return "", false, err
		}
		return "/dev/" + filepath.Base(dir), strings.TrimSpace(string(ro)) == "1", nil
	}
	return "", false, fmt.Errorf("no loop device is backed by an rbd-fuse file of %s", image)
}

// VolumeStats scrapes the kubelet's /metrics and returns, per PVC of the test namespace, the
// kubelet_volume_stats_<name> figures.
func (n *Node) VolumeStats(ctx context.Context) (map[string]map[string]float64, error) {
	body, err := n.Get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "kubelet_volume_stats_")
		if !ok {
			continue
		}
		name, rest, ok := strings.Cut(rest, "{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, `namespace="`+podNS+`"`) {
			continue
		}
		var pvc string
		for _, kv := range strings.Split(labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == "persistentvolumeclaim" {
				pvc = strings.Trim(v, `"`)
			}
		}
		x, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil || pvc == "" {
			continue
		}
		if out[pvc] == nil {
			out[pvc] = map[string]float64{}
		}
		out[pvc][name] = x
	}
	return out, nil
}

// jsonList decodes `kubectl get -o json` of a list.
func jsonList[T any](ctx context.Context, k *kube, args ...string) ([]T, error) {
	var l struct {
		Items []T `json:"items"`
	}
	out, err := k.run(ctx, append(args, "-o", "json")...)
	if err != nil {
		return nil, err
	}
	err = json.Unmarshal(out, &l)
	return l.Items, err
}
