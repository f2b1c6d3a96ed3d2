package k8s

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// writerScript appends numbered records to the volume, each synced before the pod prints
// "ack N": every acknowledged record must be on the volume afterwards.
func writerScript(block bool) string {
	write := `echo "rec $i" | dd of=/data/loop.log oflag=append conv=notrunc,fsync 2>/dev/null`
	if block {
		write = `printf 'rec %d' $i | dd of=/dev/xvda bs=4096 seek=$((1000+i)) count=1 conv=sync,notrunc,fsync 2>/dev/null`
	}
	return `trap 'exit 0' TERM; i=1; while :; do if ` + write + `; then echo "ack $i $(date +%s)"; i=$((i+1)); else echo "err $i $(date +%s)"; fi; usleep 100000; done`
}

// acks reads the writer's acknowledged record numbers and their times from its log.
func (e *podEnv) acks(ctx context.Context, pod string) (acked map[int]int64, errs int, err error) {
	out, err := e.k.run(ctx, "logs", "-n", podNS, pod)
	if err != nil {
		return nil, 0, err
	}
	acked = map[int]int64{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		at, _ := strconv.ParseInt(f[2], 10, 64)
		switch f[0] {
		case "ack":
			acked[n] = at
		case "err":
			errs++
		}
	}
	return acked, errs, nil
}

func (e *podEnv) waitAcks(ctx context.Context, pod string, atLeast int, timeout time.Duration) (int, error) {
	var n, errs int
	err := poll(ctx, timeout, func() (bool, string, error) {
		a, er, err := e.acks(ctx, pod)
		if err != nil {
			return false, err.Error(), nil
		}
		n, errs = len(a), er
		return n >= atLeast, fmt.Sprintf("%d acknowledged writes, %d failed", n, errs), nil
	})
	return n, err
}

// stepPluginRestart kills the node plugin as a runtime kills a container while a pod writes,
// starts it again, and checks the writes: continued, none acknowledged and lost; then a new
// pod mounts a new volume.
func (e *podEnv) stepPluginRestart(ctx context.Context, v *podVol) (string, error) {
	if err := e.startPod(ctx, v, "writer", v.data, false, writerScript(v.b.block)); err != nil {
		return "", err
	}
	before, err := e.waitAcks(ctx, "writer", 5, time.Minute)
	if err != nil {
		return "", fmt.Errorf("the writer before the restart: %w", err)
	}
	daemons := mountDaemons(e.node.KubeletDir)
	killed, err := e.plugin.killContainer(ctx)
	if err != nil {
		return "", err
	}
	time.Sleep(3 * time.Second)
	var dead []string
	for _, d := range daemons {
		if syscall.Kill(d.pid, 0) != nil {
			dead = append(dead, fmt.Sprintf("%s (pid %d)", d.name, d.pid))
		}
	}
	during, _, _ := e.acks(ctx, "writer")
	if err := e.plugin.restart(ctx); err != nil {
		return "", err
	}
	restarted := time.Now()
	if _, err := e.waitAcks(ctx, "writer", len(during)+10, 90*time.Second); err != nil {
		return "", fmt.Errorf("the writer after the plugin restart (%d mount daemons died: %v): %w", len(dead), dead, err)
	}
	// A new pod on a new volume, through the restarted plugin.
	after := "after-" + v.b.label
	if err := e.createPVC(ctx, v, after, v.b.access, e2eSize, ""); err != nil {
		return "", err
	}
	if _, err := waitPVCBound(ctx, e.k, podNS, after, 3*time.Minute); err != nil {
		return "", err
	}
	if err := e.startPod(ctx, v, "after", after, false, idleScript); err != nil {
		return "", fmt.Errorf("a new pod after the plugin restart: %w", err)
	}
	rec := "after the restart " + time.Now().Format(time.RFC3339Nano)
	if out, err := e.exec(ctx, "after", writeScript(v.b.block), "0", rec); err != nil {
		return "", fmt.Errorf("the new pod writes: %w (%s)", err, out)
	}
	// Stop the writer, then every acknowledged record must be on the volume.
	acked, errs, err := e.acks(ctx, "writer")
	if err != nil {
		return "", err
	}
	if err := e.deletePod(ctx, "writer"); err != nil {
		return "", err
	}
	missing, err := e.missingRecords(ctx, v, acked)
	if err != nil {
		return "", err
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%d acknowledged records are not on the volume: %v", len(missing), firstN(missing, 10))
	}
	if len(dead) > 0 {
		return "", fmt.Errorf("mount daemons died with the plugin: %v", dead)
	}
	gap := longestGap(acked)
	return fmt.Sprintf("killed %d plugin processes; %d mount daemons survived; %d records acknowledged (%d before the kill, %d while the plugin was down, %d failed writes), all on the volume; longest gap between acks %ds; back %s after the restart",
		killed, len(daemons), len(acked), before, len(during)-before, errs, gap, time.Since(restarted).Round(time.Second)), nil
}

// missingRecords reads the writer's records back through pod w1 and lists the acknowledged
// ones that are not there.
func (e *podEnv) missingRecords(ctx context.Context, v *podVol, acked map[int]int64) ([]int, error) {
	maxN := 0
	for n := range acked {
		maxN = max(maxN, n)
	}
	script := `cat /data/loop.log`
	if v.b.block {
		script = `i=1; while [ $i -le $1 ]; do dd if=/dev/xvda bs=4096 skip=$((1000+i)) count=1 2>/dev/null | tr -d '\000'; echo; i=$((i+1)); done`
	}
	out, err := e.exec(ctx, "w1", script, strconv.Itoa(maxN))
	if err != nil {
		return nil, fmt.Errorf("read the records back: %w", err)
	}
	have := map[int]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "rec" {
			n, _ := strconv.Atoi(f[1])
			have[n] = true
		}
	}
	var missing []int
	for n := range acked {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	sort.Ints(missing)
	return missing, nil
}

func longestGap(acked map[int]int64) int64 {
	var ts []int64
	for _, t := range acked {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	var gap int64
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i]-ts[i-1])
	}
	return gap
}

func firstN(xs []int, n int) []int {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}

type daemonProc struct {
	name string
	pid  int
}

// mountDaemons lists the ceph-fuse, rbd-fuse and rbd-nbd processes serving below kubeletDir.
func mountDaemons(kubeletDir string) []daemonProc {
	var out []daemonProc
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		name := filepath.Base(argv[0])
		if name != "ceph-fuse" && name != "rbd-fuse" && name != "rbd-nbd" {
			continue
		}
		if strings.Contains(strings.Join(argv, " "), kubeletDir+"/") {
			out = append(out, daemonProc{name: name, pid: pid})
		}
	}
	return out
}

// stepDeleted deletes the pods, the volumes and the snapshots, then requires the node and the
// storage to hold nothing of them.
func (e *podEnv) stepDeleted(ctx context.Context, v *podVol) error {
	var errs []error
	if _, err := e.k.run(ctx, "delete", "pod", "-n", podNS, "--all", "--wait=false"); err != nil {
		errs = append(errs, err)
	}
	for _, p := range v.pods {
		if err := waitGone(ctx, e.k, 3*time.Minute, podNS, "pod", p); err != nil {
			errs = append(errs, err)
		}
	}
	deletePVC := func(name string) {
		pv, _ := e.k.run(ctx, "get", "pvc", "-n", podNS, name, "-o", "jsonpath={.spec.volumeName}", "--ignore-not-found")
		if _, err := e.k.run(ctx, "delete", "pvc", "-n", podNS, name, "--ignore-not-found", "--wait=false"); err != nil {
			errs = append(errs, err)
		}
		if err := waitGone(ctx, e.k, 4*time.Minute, podNS, "pvc", name); err != nil {
			errs = append(errs, err)
		}
		if len(pv) > 0 {
			if err := waitGone(ctx, e.k, 4*time.Minute, "", "pv", string(pv)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// children before parents: clones and restored volumes, snapshots, then the source
	for _, p := range v.pvcs {
		if p != v.data {
			deletePVC(p)
		}
	}
	for _, s := range v.snaps {
		if _, err := e.k.run(ctx, "delete", "volumesnapshot", "-n", podNS, s, "--ignore-not-found", "--wait=false"); err != nil {
			errs = append(errs, err)
		}
		if err := waitGone(ctx, e.k, 4*time.Minute, podNS, "volumesnapshot", s); err != nil {
			errs = append(errs, err)
		}
	}
	deletePVC(v.data)
	if err := e.nodeClean(ctx); err != nil {
		errs = append(errs, err)
	}
	err := poll(ctx, 2*time.Minute, func() (bool, string, error) {
		left, err := v.b.leftovers(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return len(left) == 0, "left on the storage: " + strings.Join(left, ", "), nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// nodeClean waits until no VolumeAttachment remains and the node holds no mount, loop
// device or mount daemon of a volume.
func (e *podEnv) nodeClean(ctx context.Context) error {
	return poll(ctx, 2*time.Minute, func() (bool, string, error) {
		var left []string
		vas, err := e.k.run(ctx, "get", "volumeattachment", "-o", "name")
		if err != nil {
			return false, err.Error(), nil
		}
		left = append(left, strings.Fields(string(vas))...)
		mi, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return false, "", err
		}
		for _, l := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(l); len(f) > 4 && (strings.Contains(f[4], "/kubernetes.io~csi/") ||
				strings.Contains(f[4], "/plugins/kubernetes.io/csi/") || strings.Contains(f[4], "/volumeDevices/")) {
				left = append(left, "mount "+f[4])
			}
		}
		files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, f := range files {
			if data, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(data), e.node.KubeletDir+"/") {
				left = append(left, "loop device "+filepath.Base(filepath.Dir(filepath.Dir(f)))+" on "+strings.TrimSpace(string(data)))
			}
		}
		for _, d := range mountDaemons(e.node.KubeletDir) {
			left = append(left, fmt.Sprintf("%s pid %d", d.name, d.pid))
		}
		return len(left) == 0, "left on the node: " + strings.Join(left, ", "), nil
	})
}

// latency creates n PVC+pod pairs at once (concurrently: kubectl apply made them one after
// another, up to 1.4 s apart) and reports when each PVC was Bound and each pod Running,
// measured from before the first create, then deletes them and waits for the node to be clean.
func (e *podEnv) latency(ctx context.Context, b *podBackend, n int) (string, error) {
	trace, err := watchLatency(ctx, e.k.c.Kubeconfig, podNS, b.label, fmt.Sprintf("lat-%s-", b.label))
	if err != nil {
		return "", err
	}
	start := time.Now()
	if err := trace.createPairs(ctx, b, n); err != nil {
		trace.close()
		return "", errors.Join(err, e.deleteLatency(ctx, b))
	}
	bound, running := map[string]time.Duration{}, map[string]time.Duration{}
	type item struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Phase string `json:"phase"`
		} `json:"status"`
	}
	err = pollUntil(ctx, 8*time.Minute, func() (bool, string) {
		items, err := jsonList[item](ctx, e.k, "get", "pvc,pod", "-n", podNS, "-l", "lat="+b.label)
		if err != nil {
			return false, err.Error()
		}
		now := time.Since(start)
		for _, it := range items {
			switch {
			case it.Kind == "PersistentVolumeClaim" && it.Status.Phase == "Bound" && bound[it.Metadata.Name] == 0:
				bound[it.Metadata.Name] = now
			case it.Kind == "Pod" && it.Status.Phase == "Running" && running[it.Metadata.Name] == 0:
				running[it.Metadata.Name] = now
			}
		}
		return len(running) == n && len(bound) == n, fmt.Sprintf("%d of %d PVCs bound, %d of %d pods running", len(bound), n, len(running), n)
	})
	pairs := trace.timelines(driverCalls(e.callLogs(ctx), time.Now().Year()))
	// the watch saw each change as it happened; the poll's times are its fallback
	for name, p := range trace.pairs {
		if !p.pvcBound.IsZero() {
			bound[name] = p.pvcBound.Sub(start)
		}
		if !p.podRunning.IsZero() {
			running[name] = p.podRunning.Sub(start)
		}
	}
	cleanErr := e.deleteLatency(ctx, b)
	if err != nil {
		return "", errors.Join(err, cleanErr)
	}
	if cleanErr != nil {
		return "", cleanErr
	}
	return fmt.Sprintf("e2e-pod %s latency: pvc_bound_p50=%.1fs pod_running_p50=%.1fs pod_running_p99=%.1fs (%d pairs at once)\n%s",
		b.label, percentile(bound, 50), percentile(running, 50), percentile(running, 99), n,
		stagesLine(b.label, start, pairs)), nil
}

func (e *podEnv) deleteLatency(ctx context.Context, b *podBackend) error {
	var errs []error
	for _, kind := range []string{"pod", "pvc"} {
		if _, err := e.k.run(ctx, "delete", kind, "-n", podNS, "-l", "lat="+b.label, "--wait=false"); err != nil {
			errs = append(errs, err)
		}
		err := poll(ctx, 6*time.Minute, func() (bool, string, error) {
			out, err := e.k.run(ctx, "get", kind, "-n", podNS, "-l", "lat="+b.label, "-o", "name")
			if err != nil {
				return false, err.Error(), nil
			}
			return len(strings.Fields(string(out))) == 0, fmt.Sprintf("%d %ss left", len(strings.Fields(string(out))), kind), nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	err := poll(ctx, 6*time.Minute, func() (bool, string, error) {
		out, err := e.k.run(ctx, "get", "pv", "-o", "name")
		if err != nil {
			return false, err.Error(), nil
		}
		return len(strings.Fields(string(out))) == 0, "PVs left: " + string(out), nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if err := e.nodeClean(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// percentile is the nearest-rank percentile of the durations, in seconds.
func percentile(m map[string]time.Duration, p float64) float64 {
	var ds []float64
	for _, d := range m {
		ds = append(ds, d.Seconds())
	}
	if len(ds) == 0 {
		return math.NaN()
	}
	sort.Float64s(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// Get fetches a path of the kubelet's HTTPS server (anonymous, AlwaysAllow: test only).
func (n *Node) Get(ctx context.Context, path string) ([]byte, error) {
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the kubelet's self-signed cert, loopback
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", n.KubeletPort, path), nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet GET %s: %s", path, resp.Status)
	}
	return body, nil
}
