package k8s

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// pairTimeline is when the test saw each event of one PVC+pod pair of the latency step
// (watch events as they arrived, on the test's clock) and what the plugin logged of its
// volume (each call's end and duration, from the klog header and the "duration" field).
type pairTimeline struct {
	pvcCreated, pvCreated, pvcBound time.Time
	podScheduled, podRunning        time.Time
	vaCreated, vaAttached           time.Time
	pv, volumeID                    string
	calls                           map[string]driverCall // by CSI method
}

type driverCall struct {
	end  time.Time
	took time.Duration
}

func (c driverCall) start() time.Time { return c.end.Add(-c.took) }

// latencyStages are the stages of the critical path of a PVC+pod pair, in order; each is
// measured from the end of the one before it (or from when the pair's own object appeared).
var latencyStages = []string{"create", "provision", "bind", "schedule", "attach_request", "attach",
	"kubelet_wait", "stage", "publish", "start"}

// stages splits one pair's time from the apply to Running into latencyStages. A stage
// whose event came before the end of the stage before it (a pod scheduled while its PVC's
// status was not yet Bound) counts 0: the durations add up to the pair's time to Running.
func (p *pairTimeline) stages(applied time.Time) (map[string]time.Duration, bool) {
	stage, publish := p.calls["NodeStageVolume"], p.calls["NodePublishVolume"]
	marks := []time.Time{p.pvcCreated, p.pvCreated, p.pvcBound, p.podScheduled, p.vaCreated, p.vaAttached,
		stage.start(), stage.end, publish.end, p.podRunning}
	out := map[string]time.Duration{}
	last := applied
	for i, m := range marks {
		if m.IsZero() || stage.end.IsZero() || publish.end.IsZero() {
			return nil, false
		}
		if m.After(last) {
			out[latencyStages[i]] = m.Sub(last)
			last = m
		} else {
			out[latencyStages[i]] = 0
		}
	}
	return out, true
}

// stagesLine is the per-stage median over the pairs and the plugin's median time per call,
// so the latency line says where the time goes.
func stagesLine(label string, applied time.Time, pairs []*pairTimeline) string {
	per := map[string]map[string]time.Duration{}
	calls := map[string]map[string]time.Duration{}
	complete, early := 0, 0
	for i, p := range pairs {
		key := fmt.Sprint(i)
		if !p.podScheduled.IsZero() && !p.pvcBound.IsZero() && p.podScheduled.Before(p.pvcBound) {
			early++
		}
		if s, ok := p.stages(applied); ok {
			complete++
			for name, d := range s {
				if per[name] == nil {
					per[name] = map[string]time.Duration{}
				}
				per[name][key] = d
			}
		}
		for m, c := range p.calls {
			if calls[m] == nil {
				calls[m] = map[string]time.Duration{}
			}
			calls[m][key] = c.took
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "e2e-pod %s latency-stages: p50", label)
	for _, s := range latencyStages {
		fmt.Fprintf(&b, " %s=%.2fs", s, percentile(per[s], 50))
	}
	b.WriteString("; plugin calls p50:")
	for _, m := range []string{"CreateVolume", "ControllerPublishVolume", "NodeStageVolume", "NodePublishVolume"} {
		fmt.Fprintf(&b, " %s=%.3fs", m, percentile(calls[m], 50))
	}
	// The scheduler takes a PVC with a volume name as bound; a kubelet that reads the PVC
	// before its status says Bound fails the pod's volumes and retries the pod 10 s later.
	fmt.Fprintf(&b, "; %d pods scheduled before their PVC's status was Bound (%d of %d pairs traced)", early, complete, len(pairs))
	return b.String()
}

// callLine matches the plugin's "Call done" and "Slow call" lines (pkg/driver/logging.go);
// CreateVolume names its volume in created_volume_id.
var (
	callLine    = regexp.MustCompile(`^[IW](\d{4} \d{2}:\d{2}:\d{2}\.\d{6})\s.*"(?:Call done|Slow call)".* method="(\w+)" volume_id="([^"]*)".* duration="([^"]+)"`)
	createdLine = regexp.MustCompile(` created_volume_id="([^"]+)"`)
)

// driverCalls reads the plugin's logs: per volume ID and method, the last successful call.
func driverCalls(logs []byte, year int) map[string]map[string]driverCall {
	out := map[string]map[string]driverCall{}
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := callLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if c := createdLine.FindStringSubmatch(sc.Text()); c != nil {
			m[3] = c[1]
		}
		if m[3] == "" {
			continue
		}
		end, err := time.ParseInLocation("0102 15:04:05.000000", m[1], time.Local)
		took, err2 := time.ParseDuration(m[4])
		if err != nil || err2 != nil {
			continue
		}
		if out[m[3]] == nil {
			out[m[3]] = map[string]driverCall{}
		}
		out[m[3]][m[2]] = driverCall{end: end.AddDate(year, 0, 0), took: took}
	}
	return out
}

// latencyWatch records the events of the latency step's objects as the API server sends them.
type latencyWatch struct {
	mu      sync.Mutex
	pairs   map[string]*pairTimeline // by PVC (= pod) name
	pvClaim map[string]string        // PV name -> PVC name
	prefix  string                   // the pairs' names start with it
	cs      kubernetes.Interface
	stop    context.CancelFunc
	done    sync.WaitGroup
}

func watchLatency(ctx context.Context, kubeconfig, ns, label, prefix string) (*latencyWatch, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &latencyWatch{pairs: map[string]*pairTimeline{}, pvClaim: map[string]string{}, prefix: prefix, cs: cs, stop: cancel}
	sel := metav1.ListOptions{LabelSelector: "lat=" + label}
	watches := []func() (watch.Interface, error){
		func() (watch.Interface, error) { return cs.CoreV1().PersistentVolumeClaims(ns).Watch(ctx, sel) },
		func() (watch.Interface, error) { return cs.CoreV1().Pods(ns).Watch(ctx, sel) },
		func() (watch.Interface, error) {
			return cs.CoreV1().PersistentVolumes().Watch(ctx, metav1.ListOptions{})
		},
		func() (watch.Interface, error) {
			return cs.StorageV1().VolumeAttachments().Watch(ctx, metav1.ListOptions{})
		},
	}
	for _, open := range watches {
		wi, err := open()
		if err != nil {
			w.close()
			return nil, err
		}
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			defer wi.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-wi.ResultChan():
					if !ok {
						return
					}
					w.record(ev.Object, time.Now())
				}
			}
		}()
	}
	return w, nil
}

func (w *latencyWatch) pair(name string) *pairTimeline {
	p := w.pairs[name]
	if p == nil {
		p = &pairTimeline{}
		w.pairs[name] = p
	}
	return p
}

func setOnce(t *time.Time, now time.Time) {
	if t.IsZero() {
		*t = now
	}
}

func (w *latencyWatch) record(obj any, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch o := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		p := w.pair(o.Name)
		setOnce(&p.pvcCreated, now)
		if o.Status.Phase == corev1.ClaimBound {
			setOnce(&p.pvcBound, now)
		}
	case *corev1.Pod:
		p := w.pair(o.Name)
		if o.Spec.NodeName != "" {
			setOnce(&p.podScheduled, now)
		}
		if o.Status.Phase == corev1.PodRunning {
			setOnce(&p.podRunning, now)
		}
	case *corev1.PersistentVolume:
		// the PV's first event may come before its PVC's (another watch)
		if ref := o.Spec.ClaimRef; ref != nil && strings.HasPrefix(ref.Name, w.prefix) {
			p := w.pair(ref.Name)
			setOnce(&p.pvCreated, now)
			p.pv, w.pvClaim[o.Name] = o.Name, ref.Name
			if o.Spec.CSI != nil {
				p.volumeID = o.Spec.CSI.VolumeHandle
			}
		}
	case *storagev1.VolumeAttachment:
		src := o.Spec.Source.PersistentVolumeName
		if src == nil || w.pvClaim[*src] == "" {
			return
		}
		p := w.pairs[w.pvClaim[*src]]
		setOnce(&p.vaCreated, now)
		if o.Status.Attached {
			setOnce(&p.vaAttached, now)
		}
	}
}

func (w *latencyWatch) close() {
	w.stop()
	w.done.Wait()
}

// timelines stops the watch and joins the plugin's calls to each pair by volume ID.
func (w *latencyWatch) timelines(calls map[string]map[string]driverCall) []*pairTimeline {
	w.close()
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.pairs))
	for n := range w.pairs {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*pairTimeline
	for _, n := range names {
		p := w.pairs[n]
		p.calls = calls[p.volumeID]
		out = append(out, p)
	}
	return out
}

// latencyPair is the PVC and the pod of one pair: the pod writes nothing and idles.
func latencyPair(b *podBackend, name string) (*corev1.PersistentVolumeClaim, *corev1.Pod) {
	meta := metav1.ObjectMeta{Name: name, Namespace: podNS, Labels: map[string]string{"lat": b.label}}
	mode := corev1.PersistentVolumeFilesystem
	c := corev1.Container{Name: "c", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
		Command: []string{"/bin/sh", "-c", idleScript}}
	if b.block {
		mode = corev1.PersistentVolumeBlock
		c.VolumeDevices = []corev1.VolumeDevice{{Name: "vol", DevicePath: "/dev/xvda"}}
	} else {
		c.VolumeMounts = []corev1.VolumeMount{{Name: "vol", MountPath: "/data"}}
	}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: meta, Spec: corev1.PersistentVolumeClaimSpec{
		StorageClassName: &b.sc, VolumeMode: &mode,
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.PersistentVolumeAccessMode(b.access)},
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	grace := int64(2)
	pod := &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{
		HostNetwork: true, TerminationGracePeriodSeconds: &grace, RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{c},
		Volumes: []corev1.Volume{{Name: "vol", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}}}
	return pvc, pod
}

// createPairs creates the n pairs' objects all at once, each in its own request.
func (w *latencyWatch) createPairs(ctx context.Context, b *podBackend, n int) error {
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		pvc, pod := latencyPair(b, fmt.Sprintf("%s%02d", w.prefix, i))
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := w.cs.CoreV1().PersistentVolumeClaims(podNS).Create(ctx, pvc, metav1.CreateOptions{})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := w.cs.CoreV1().Pods(podNS).Create(ctx, pod, metav1.CreateOptions{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}
