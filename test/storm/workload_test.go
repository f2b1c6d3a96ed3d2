package storm

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// workload is the burst for one backend: plain volumes, and chains of a volume, a snapshot
// of it and a clone (of the snapshot for the first half, of the volume for the second).
type workload struct {
	backend, tenant, kind string

	mu    sync.Mutex
	vols  map[string]string // request name -> volume ID
	snaps map[string]string // request name -> snapshot ID
}

func newWorkload(backendName, tenant, kind string) *workload {
	return &workload{backend: backendName, tenant: tenant, kind: kind, vols: map[string]string{}, snaps: map[string]string{}}
}

func (w *workload) name(what string, i int) string {
	return fmt.Sprintf("%s-%s-%s%d", w.tenant, w.kind, what, i)
}

// made counts the volumes whose create succeeded.
func (w *workload) made() int {
	n := 0
	for _, id := range w.vols {
		if id != "" {
			n++
		}
	}
	return n
}

// expected is what the storage holds once every create succeeded.
func (w *workload) expected() map[string]int {
	vols := plainVolumes + chains
	switch w.kind {
	case "rbd":
		return map[string]int{"image": vols, "snapshot": chains}
	case "cephfs":
		return map[string]int{"subvolume": vols, "snapshot": chains}
	}
	return map[string]int{"dir": vols, "quota": vols, "export": vols, "snapshot": chains}
}

var rwo = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

func (w *workload) createVolume(t *testing.T, c *co, name string, source *csi.VolumeContentSource) string {
	req := &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: volumeBytes},
		VolumeCapabilities: []*csi.VolumeCapability{rwo}, VolumeContentSource: source,
		Parameters: map[string]string{"backend": w.backend, "csi.storage.k8s.io/pvc/namespace": w.tenant}}
	var id string
	c.retry(t, "CreateVolume "+name, func(ctx context.Context) error {
		resp, err := c.ctrl.CreateVolume(ctx, req)
		if err == nil {
			id = resp.Volume.VolumeId
		}
		return err
	})
	w.mu.Lock()
	w.vols[name] = id
	w.mu.Unlock()
	return id
}

func (w *workload) createSnapshot(t *testing.T, c *co, name, source string) string {
	var id string
	c.retry(t, "CreateSnapshot "+name, func(ctx context.Context) error {
		resp, err := c.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: source})
		if err == nil {
			id = resp.Snapshot.SnapshotId
		}
		return err
	})
	w.mu.Lock()
	w.snaps[name] = id
	w.mu.Unlock()
	return id
}

func (w *workload) chain(t *testing.T, c *co, i int) {
	base := w.createVolume(t, c, w.name("base", i), nil)
	if base == "" {
		return
	}
	snap := w.createSnapshot(t, c, w.name("snap", i), base)
	if snap == "" {
		return
	}
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap}}}
	if i >= chains/2 {
		src = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: base}}}
	}
	w.createVolume(t, c, w.name("clone", i), src)
}

func (w *workload) createAll(t *testing.T, c *co) {
	var jobs []func()
	for i := 0; i < chains; i++ {
		jobs = append(jobs, func() { w.chain(t, c, i) })
	}
	for i := 0; i < plainVolumes-chains; i++ {
		jobs = append(jobs, func() { w.createVolume(t, c, w.name("vol", i), nil) })
	}
	parallel(jobs)
}

func (w *workload) deleteVolume(t *testing.T, c *co, name string) {
	id := w.vols[name]
	if id == "" {
		return // never created: its create already failed the test
	}
	c.retry(t, "DeleteVolume "+name, func(ctx context.Context) error {
		_, err := c.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		return err
	})
}

func (w *workload) deleteAll(t *testing.T, c *co) {
	var jobs []func()
	for i := 0; i < chains; i++ {
		jobs = append(jobs, func() {
			w.deleteVolume(t, c, w.name("clone", i))
			id := w.snaps[w.name("snap", i)]
			if id == "" {
				return
			}
			c.retry(t, "DeleteSnapshot "+w.name("snap", i), func(ctx context.Context) error {
				_, err := c.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id})
				return err
			})
			w.deleteVolume(t, c, w.name("base", i))
		})
	}
	for i := 0; i < plainVolumes-chains; i++ {
		jobs = append(jobs, func() { w.deleteVolume(t, c, w.name("vol", i)) })
	}
	parallel(jobs)
}

// parallel runs jobs on concurrency workers.
func parallel(jobs []func()) {
	ch := make(chan func())
	var wg sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				j()
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
}
