package driver

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"

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
func (d *Driver) RepairStaged(ctx context.Context, kubeletDir string) int {
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
		if json.Unmarshal(data, &vd) != nil || vd.DriverName != d.opts.Name {
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
		if err := s.Repair(klog.NewContext(ctx, logger), id, staging); err != nil {
			logger.Error(err, "Repair of a staged volume failed; the next publish retries", "staging", staging)
		}
		release()
	}
	return checked
}
