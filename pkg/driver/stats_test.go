package driver

import (
	"math"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
)

func TestVolumeUsage(t *testing.T) {
	testCases := []struct {
		name       string
		fs         unix.Statfs_t
		wantInodes bool
	}{
		// statfs of a ceph-fuse mount of a fresh subvolume with a 1 GiB quota: f_files counts
		// the inodes in use, f_ffree is -1 (the kubelet showed inodes 2, used 3, free -1).
		{"ceph-fuse", unix.Statfs_t{Bsize: 4 << 20, Blocks: 256, Bfree: 256, Bavail: 256, Files: 2, Ffree: math.MaxUint64}, false},
		{"ext4", unix.Statfs_t{Bsize: 4096, Blocks: 253440, Bfree: 249000, Bavail: 235000, Files: 65536, Ffree: 65525}, true},
		{"no inode figures", unix.Statfs_t{Bsize: 4096, Blocks: 100, Bfree: 50, Bavail: 50}, false},
		{"free blocks above total", unix.Statfs_t{Bsize: 4096, Blocks: 100, Bfree: 101, Bavail: 100, Files: 10, Ffree: 5}, true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			usage := volumeUsage(tc.fs)
			var inodes *csi.VolumeUsage
			for _, u := range usage {
				if u.Total < 0 || u.Used < 0 || u.Available < 0 {
					t.Errorf("%s usage has a negative figure: %+v", u.Unit, u)
				}
				if u.Used > u.Total {
					t.Errorf("%s usage: used %d > total %d", u.Unit, u.Used, u.Total)
				}
				if u.Unit == csi.VolumeUsage_INODES {
					inodes = u
				}
			}
			if usage[0].Unit != csi.VolumeUsage_BYTES || usage[0].Total != int64(tc.fs.Blocks)*tc.fs.Bsize {
				t.Errorf("bytes usage %+v, want total %d", usage[0], int64(tc.fs.Blocks)*tc.fs.Bsize)
			}
			if got := inodes != nil; got != tc.wantInodes {
				t.Fatalf("inode usage reported: %v, want %v (%+v)", got, tc.wantInodes, inodes)
			}
			if inodes != nil && inodes.Used != int64(tc.fs.Files-tc.fs.Ffree) {
				t.Errorf("inodes used %d, want %d", inodes.Used, tc.fs.Files-tc.fs.Ffree)
			}
		})
	}
}
