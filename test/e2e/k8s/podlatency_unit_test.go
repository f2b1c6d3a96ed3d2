package k8s

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestLatencyStagesAddUpToRunning: the stages of a pair follow its events in order, a pod
// scheduled before its PVC's status said Bound counts 0 for scheduling, and the stages add
// up to the pair's time from the apply to Running.
func TestLatencyStagesAddUpToRunning(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 37, 57, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	p := &pairTimeline{
		pvcCreated: at(100), pvCreated: at(400), pvcBound: at(1400),
		podScheduled: at(1300), // before the PVC's status: the scheduler's "fully bound" came first
		vaCreated:    at(1500), vaAttached: at(2000), podRunning: at(9000),
		calls: map[string]driverCall{
			"NodeStageVolume":   {end: at(7000), took: 500 * time.Millisecond},
			"NodePublishVolume": {end: at(7100), took: 50 * time.Millisecond},
		},
	}
	s, ok := p.stages(t0)
	if !ok {
		t.Fatal("a complete timeline was not split")
	}
	want := map[string]time.Duration{"create": 100, "provision": 300, "bind": 1000, "schedule": 0,
		"attach_request": 100, "attach": 500, "kubelet_wait": 4500, "stage": 500, "publish": 100, "start": 1900}
	var sum time.Duration
	for name, ms := range want {
		if s[name] != ms*time.Millisecond {
			t.Errorf("%s = %s, want %dms", name, s[name], ms)
		}
		sum += s[name]
	}
	if sum != 9*time.Second {
		t.Errorf("stages add up to %s, want the 9s to Running", sum)
	}
	p.calls = nil
	if _, ok := p.stages(t0); ok {
		t.Error("a timeline without the plugin's calls was split")
	}
	line := stagesLine("rbd", t0, []*pairTimeline{p, {}})
	for _, w := range []string{"e2e-pod rbd latency-stages: p50 create=", " bind=", " kubelet_wait=", "; 1 pods scheduled before their PVC's status was Bound (0 of 2 pairs traced)"} {
		if !strings.Contains(line, w) {
			t.Errorf("line %q lacks %q", line, w)
		}
	}
}

// TestDriverCallsFromPluginLog: the plugin's "Call done" and "Slow call" lines give each
// volume's calls with their end and duration; failed calls and other lines do not count.
func TestDriverCallsFromPluginLog(t *testing.T) {
	log := `I1202 06:38:14.619692   21399 logging.go:51] "Call done" request_id="28d6" method="NodePublishVolume" volume_id="v1:isilon:tenant-a::42cc" tenant="tenant-a" backend="isilon" duration="7.082522ms"
E1202 06:38:15.000000   21399 logging.go:47] "Call failed" err="x" request_id="1" method="NodeStageVolume" volume_id="v1:isilon:tenant-a::42cc" duration="1s" code="Internal"
I1202 06:38:20.500000   21399 logging.go:49] "Slow call" request_id="2" method="NodeStageVolume" volume_id="v1:isilon:tenant-a::42cc" tenant="tenant-a" backend="isilon" threshold="10s" duration="12.5s"
I1202 06:38:20.600000   21399 other.go:1] "Mounted" volume_id="v1:isilon:tenant-a::42cc"
I1202 06:38:01.000000   11596 logging.go:51] "Call done" request_id="3" method="CreateVolume" volume_id="" tenant="tenant-a" backend="isilon" name="pvc-0b" created_volume_id="v1:isilon:tenant-a::42cc" duration="122.5ms"
I1202 06:38:01.100000   11596 logging.go:51] "Call done" request_id="4" method="GetCapacity" volume_id="" duration="1ms"
`
	calls := driverCalls([]byte(log), 2026)
	c := calls["v1:isilon:tenant-a::42cc"]
	if len(c) != 3 || len(calls) != 1 {
		t.Fatalf("calls %v, want CreateVolume, NodePublishVolume and NodeStageVolume of one volume", calls)
	}
	if cr := c["CreateVolume"]; cr.took != 122500*time.Microsecond {
		t.Errorf("CreateVolume %+v, want the call of 122.5ms named by created_volume_id", cr)
	}
	pub := c["NodePublishVolume"]
	if want := time.Date(2026, 12, 2, 6, 38, 14, 619692000, time.Local); !pub.end.Equal(want) || pub.took != 7082522*time.Nanosecond {
		t.Errorf("NodePublishVolume %+v, want end %s took 7.082522ms", pub, want)
	}
	if st := c["NodeStageVolume"]; st.took != 12500*time.Millisecond || st.start() != time.Date(2026, 12, 2, 6, 38, 8, 0, time.Local) {
		t.Errorf("NodeStageVolume %+v, want the slow call of 12.5s ending 06:38:20.5", st)
	}
}

// TestLatencyWatchJoinsObjects: PVC, pod, PV and VolumeAttachment events land on their
// pair (also a PV seen before its PVC), each time set once, and the plugin's calls are
// joined by the PV's volume handle.
func TestLatencyWatchJoinsObjects(t *testing.T) {
	w := &latencyWatch{pairs: map[string]*pairTimeline{}, pvClaim: map[string]string{}, prefix: "lat-rbd-", stop: func() {}}
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pvName := "pvc-1"
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvName}, Spec: corev1.PersistentVolumeSpec{
		ClaimRef:               &corev1.ObjectReference{Name: "lat-rbd-00"},
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{VolumeHandle: "vol-1"}}}}
	other := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-2"}, Spec: corev1.PersistentVolumeSpec{
		ClaimRef: &corev1.ObjectReference{Name: "data-rbd"}}}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "lat-rbd-00"}}
	bound := pvc.DeepCopy()
	bound.Status.Phase = corev1.ClaimBound
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "lat-rbd-00"}}
	scheduled := pod.DeepCopy()
	scheduled.Spec.NodeName = "localhost"
	running := scheduled.DeepCopy()
	running.Status.Phase = corev1.PodRunning
	va := &storagev1.VolumeAttachment{Spec: storagev1.VolumeAttachmentSpec{Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pvName}}}
	attached := va.DeepCopy()
	attached.Status.Attached = true
	for i, o := range []any{pv, other, pvc, pod, bound, scheduled, va, attached, running, bound, attached} {
		w.record(o, at(100*(i+1)))
	}
	got := w.timelines(map[string]map[string]driverCall{"vol-1": {"NodeStageVolume": {}}})
	if len(got) != 1 {
		t.Fatalf("%d pairs, want 1 (a PV of another PVC is not a pair)", len(got))
	}
	p := got[0]
	want := []struct {
		name string
		got  time.Time
		ms   int
	}{{"pvCreated", p.pvCreated, 100}, {"pvcCreated", p.pvcCreated, 300}, {"pvcBound", p.pvcBound, 500},
		{"podScheduled", p.podScheduled, 600}, {"vaCreated", p.vaCreated, 700}, {"vaAttached", p.vaAttached, 800},
		{"podRunning", p.podRunning, 900}}
	for _, w := range want {
		if !w.got.Equal(at(w.ms)) {
			t.Errorf("%s at %s, want +%dms", w.name, w.got.Sub(t0), w.ms)
		}
	}
	if _, ok := p.calls["NodeStageVolume"]; !ok || p.volumeID != "vol-1" {
		t.Errorf("calls %v of volume %q: not joined by the PV's volume handle", p.calls, p.volumeID)
	}
}

// TestLatencyPairsCreatedAtOnce: every pair's PVC and pod are created, with the class,
// access and volume mode of the line (a block device for rbd-block), and a create that
// fails is reported.
func TestLatencyPairsCreatedAtOnce(t *testing.T) {
	ctx := context.Background()
	b := &podBackend{e2eBackend: &e2eBackend{sc: "shiphold-rbd"}, label: "rbd-block", block: true, access: "ReadWriteMany"}
	cs := fake.NewClientset()
	w := &latencyWatch{prefix: "lat-rbd-block-", cs: cs}
	if err := w.createPairs(ctx, b, 3); err != nil {
		t.Fatal(err)
	}
	pvcs, _ := cs.CoreV1().PersistentVolumeClaims(podNS).List(ctx, metav1.ListOptions{LabelSelector: "lat=rbd-block"})
	pods, _ := cs.CoreV1().Pods(podNS).List(ctx, metav1.ListOptions{LabelSelector: "lat=rbd-block"})
	if len(pvcs.Items) != 3 || len(pods.Items) != 3 {
		t.Fatalf("%d PVCs and %d pods, want 3 of each", len(pvcs.Items), len(pods.Items))
	}
	for _, p := range pvcs.Items {
		if *p.Spec.StorageClassName != "shiphold-rbd" || *p.Spec.VolumeMode != corev1.PersistentVolumeBlock ||
			p.Spec.AccessModes[0] != corev1.ReadWriteMany {
			t.Errorf("PVC %s: %+v", p.Name, p.Spec)
		}
	}
	for _, p := range pods.Items {
		c := p.Spec.Containers[0]
		if len(c.VolumeDevices) != 1 || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != p.Name {
			t.Errorf("pod %s does not use its PVC as a block device: %+v", p.Name, p.Spec)
		}
	}
	if err := w.createPairs(ctx, b, 1); err == nil || !strings.Contains(err.Error(), "lat-rbd-block-00") {
		t.Errorf("creating an existing pair: err %v, want it named", err)
	}
}
