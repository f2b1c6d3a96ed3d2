package driver

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/mounter"
	"github.com/shiphold/shiphold/pkg/volid"
)

// kubeletVolData is what kubelet writes beside each staging directory (globalmount).
type kubeletVolData struct {
	DriverName   string `json:"driverName"`
	VolumeHandle string `json:"volumeHandle"`
}

// RepairStaged finds the volumes kubelet staged through this driver below kubeletDir and asks
// their backend to repair each (a ceph-fuse mount that died with the previous plugin
// process). It returns how many staged volumes it checked; failures are logged, not fatal:
// the next NodePublish retries the repair.
func (d *NodeServer) RepairStaged(ctx context.Context, kubeletDir string) int {
	pattern := filepath.Join(kubeletDir, "plugins", "kubernetes.io", "csi", "*", "*", "vol_data.json")
	files, err := filepath.Glob(pattern)
	if err != nil {
		klog.Warningf("repair: %v", err)
		return 0
	}
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var vd kubeletVolData
		if json.Unmarshal(data, &vd) != nil || vd.DriverName != d.opts.DriverName {
			continue
		}
		id, err := volid.ParseVolume(vd.VolumeHandle)
		if err != nil {
			continue
		}
		s, ok := d.opts.Stagers[id.Backend]
		if !ok {
			continue
		}
		staging := filepath.Join(filepath.Dir(f), "globalmount")
		if _, err := os.Stat(staging); os.IsNotExist(err) {
			continue
		}
		checked++
		ctx, release, err := d.inflight.acquire(ctx, id.String())
		if err != nil {
			continue
		}
		logger := klog.FromContext(ctx).WithValues("method", "RepairStaged", "volume_id", id.String(), "tenant", id.Tenant, "backend", id.Backend)
		if err := s.Repair(klog.NewContext(ctx, logger), id, staging, nil); err != nil {
			logger.Error(err, "Repair of a staged volume failed; the next publish retries", "staging", staging)
		} else if n, err := d.rebindDeadTargets(ctx, id, s, staging); err != nil {
			logger.Error(err, "Re-binding the pods' targets of a repaired volume failed; the next publish retries", "staging", staging)
		} else if n > 0 {
			logger.Info("Re-bound pods' targets to the repaired mount", "targets", n, "staging", staging)
		}
		release()
	}
	return checked
}

// rebindDeadTargets binds again, to the repaired staged mount, every published target still
// bound to the dead one (a killed FUSE client): containers started from then on (a restarted
// container of a running pod) see the volume again without waiting for a new publish.
func (d *NodeServer) rebindDeadTargets(ctx context.Context, id volid.Volume, s backend.Stager, staging string) (int, error) {
	var dead []string
	for _, t := range d.publishedTargets(staging) {
		if _, err := mounter.Stat(ctx, t, d.opts.MountCallTimeout); errors.Is(err, unix.ENOTCONN) || errors.Is(err, mounter.ErrNotResponding) {
			dead = append(dead, t)
		}
	}
	if len(dead) == 0 {
		return 0, nil
	}
	source, block, err := s.PublishSource(ctx, id, staging)
	if err != nil {
		return 0, err
	}
	mps, err := d.mounter.List()
	if err != nil {
		return 0, err
	}
	for _, t := range dead {
		opts := []string{"bind"}
		for _, mp := range mps {
			if mp.Path == t && slices.Contains(mp.Opts, "ro") {
				opts = append(opts, "ro")
			}
		}
		if err := d.bindMount(ctx, source, t, block, opts); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}
