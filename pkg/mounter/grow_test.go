package mounter

import (
	"strings"
	"testing"

	testingexec "k8s.io/utils/exec/testing"
)

// ext4 of 1 GiB (262144 blocks of 4 KiB) on a device of devSize bytes.
func growHandler(devSize string, e2fsckExit int) func(string, ...string) ([]byte, error) {
	return func(name string, args ...string) ([]byte, error) {
		switch name {
		case "blockdev":
			return []byte(devSize + "\n"), nil
		case "blkid":
			return []byte("DEVNAME=/dev/loop1\nTYPE=ext4\n"), nil
		case "dumpe2fs":
			return []byte("Block count:              262144\nBlock size:               4096\n"), nil
		case "e2fsck":
			if e2fsckExit != 0 {
				return []byte("fixed"), testingexec.FakeExitError{Status: e2fsckExit}
			}
		}
		return nil, nil
	}
}

func TestGrowUnmounted(t *testing.T) {
	testCases := []struct {
		name       string
		fsType     string
		devSize    string
		e2fsckExit int
		wantGrown  bool
		wantErr    string
		wantCmds   []string
	}{
		{name: "grown device", fsType: "ext4", devSize: "2147483648", wantGrown: true,
			wantCmds: []string{"e2fsck -f -p /dev/loop1", "resize2fs /dev/loop1"}},
		{name: "e2fsck corrected something", fsType: "ext4", devSize: "2147483648", e2fsckExit: 1, wantGrown: true,
			wantCmds: []string{"resize2fs /dev/loop1"}},
		{name: "e2fsck found errors it left", fsType: "ext4", devSize: "2147483648", e2fsckExit: 4, wantErr: "e2fsck"},
		{name: "filesystem fills the device", fsType: "ext4", devSize: "1073741824"},
		{name: "xfs grows online only", fsType: "xfs", devSize: "2147483648"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m, _, fe := NewFake()
			fe.Handler = growHandler(tc.devSize, tc.e2fsckExit)
			grown, err := m.GrowUnmounted("/dev/loop1", tc.fsType)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("GrowUnmounted = %v, want an error naming %s", err, tc.wantErr)
				}
				if strings.Contains(strings.Join(fe.Commands(), "\n"), "resize2fs") {
					t.Fatal("resize2fs ran on a filesystem e2fsck did not pass")
				}
				return
			}
			if err != nil || grown != tc.wantGrown {
				t.Fatalf("GrowUnmounted = %v, %v; want %v (ran %v)", grown, err, tc.wantGrown, fe.Commands())
			}
			all := strings.Join(fe.Commands(), "\n")
			for _, c := range tc.wantCmds {
				if !strings.Contains(all, c) {
					t.Errorf("%q did not run (ran %v)", c, fe.Commands())
				}
			}
			if !tc.wantGrown && strings.Contains(all, "resize2fs") {
				t.Errorf("resize2fs ran although nothing was to grow: %v", fe.Commands())
			}
		})
	}
}
