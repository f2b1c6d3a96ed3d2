package harness

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFrozenFSAnswersThenHangs(t *testing.T) {
	dir := t.TempDir()
	f := MountFrozenFS(t, dir)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Bsize != 4096 {
		t.Fatalf("statfs before the freeze: %v %+v", err, st)
	}
	var s unix.Stat_t
	if err := unix.Stat(dir, &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("stat before the freeze: %v", err)
	}
	f.Freeze()
	done := make(chan error, 1)
	go func() { var s unix.Stat_t; done <- unix.Stat(dir, &s) }()
	select {
	case err := <-done:
		t.Fatalf("stat of a frozen mount returned: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	f.Close()
	select {
	case err := <-done:
		if !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.ECONNABORTED) && err != nil {
			t.Logf("stat after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the frozen mount did not release a blocked stat")
	}
}
