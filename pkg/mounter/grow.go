package mounter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	utilexec "k8s.io/utils/exec"
)

// GrowUnmounted grows an ext2/3/4 filesystem to fill its device before it is mounted. Online
// growth (NodeExpandVolume on a mounted filesystem) needs CAP_SYS_RESOURCE; a node plugin
// without it still brings a grown volume to its full size at the next stage. It reports
// whether it grew anything; other filesystem types are left to online growth.
func (m *Mounter) GrowUnmounted(device, fsType string) (bool, error) {
	switch fsType {
	case "ext2", "ext3", "ext4":
	default:
		return false, nil
	}
	// mount-utils' NeedResize leaves ext to resize2fs; here the sizes decide, so that a stage
	// of a volume at its size runs neither e2fsck nor resize2fs.
	devSize, err := m.Exec.Command("blockdev", "--getsize64", device).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("size of %s: %v: %s", device, err, strings.TrimSpace(string(devSize)))
	}
	dev, err := strconv.ParseInt(strings.TrimSpace(string(devSize)), 10, 64)
	if err != nil {
		return false, fmt.Errorf("size of %s: %q", device, devSize)
	}
	fsSize, blockSize, err := m.extSize(device)
	if err != nil {
		return false, err
	}
	if dev <= fsSize+blockSize {
		return false, nil
	}
	// resize2fs refuses a filesystem not checked since its last mount; e2fsck -p exits 1
	// when it corrected something, which is fine.
	if out, err := m.Exec.Command("e2fsck", "-f", "-p", device).CombinedOutput(); err != nil {
		var ee utilexec.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 1 {
			return false, fmt.Errorf("e2fsck -f -p %s before growing it: %v: %s", device, err, strings.TrimSpace(string(out)))
		}
	}
	if out, err := m.Exec.Command("resize2fs", device).CombinedOutput(); err != nil {
		return false, fmt.Errorf("resize2fs %s: %v: %s", device, err, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// extSize reads an ext filesystem's size and block size from its superblock.
func (m *Mounter) extSize(device string) (size, blockSize int64, err error) {
	out, err := m.Exec.Command("dumpe2fs", "-h", device).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("dumpe2fs -h %s: %v: %s", device, err, strings.TrimSpace(string(out)))
	}
	var count int64
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Block count":
			count, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		case "Block size":
			blockSize, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if count <= 0 || blockSize <= 0 {
		return 0, 0, fmt.Errorf("dumpe2fs -h %s shows no block count and size", device)
	}
	return count * blockSize, blockSize, nil
}
