package driver

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
)

// targetsFile, in a volume's staging directory, lists the paths the volume is published at
// on this node. It answers what the mount table cannot for a raw block device (is it bound
// elsewhere?) and leads from a volume path back to its staging path. Entries whose mount is
// gone (NodeUnpublish gets no staging path) are pruned whenever the file is read.
const targetsFile = "shiphold-targets.json"

func (d *NodeServer) publishedTargets(staging string) []string {
	data, err := os.ReadFile(filepath.Join(staging, targetsFile))
	if err != nil {
		return nil
	}
	var all []string
	if json.Unmarshal(data, &all) != nil {
		return nil
	}
	var live []string
	for _, t := range all {
		if mounted, err := d.isMountPoint(t); err == nil && mounted {
			live = append(live, t)
		}
	}
	return live
}

func (d *NodeServer) recordTarget(staging, target string) error {
	targets := d.publishedTargets(staging)
	for _, t := range targets {
		if t == target {
			return nil
		}
	}
	targets = append(targets, target)
	sort.Strings(targets)
	data, err := json.Marshal(targets)
	if err != nil {
		return err
	}
	tmp := filepath.Join(staging, targetsFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(staging, targetsFile))
}

// stagingPathOf finds the staging path of a published volume path: a directory holding
// another mount of the same filesystem whose targets record lists volumePath.
func (d *NodeServer) stagingPathOf(volumePath string) string {
	refs, err := d.mounter.GetMountRefs(volumePath)
	if err != nil {
		return ""
	}
	for _, ref := range refs {
		for _, dir := range []string{filepath.Dir(ref), ref} {
			for _, t := range d.publishedTargets(dir) {
				if filepath.Clean(t) == filepath.Clean(volumePath) {
					return dir
				}
			}
		}
	}
	return ""
}
