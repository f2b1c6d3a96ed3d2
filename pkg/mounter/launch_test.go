package mounter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeCgroupTree makes a directory per hierarchy, as cgroupfs shows it to the launcher, and a
// mountinfo that lists them (plus a mount that is not a cgroup).
func fakeCgroupTree(t *testing.T) (root, mountinfo string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "cgroup")
	var lines []string
	for i, h := range []string{"cpuset", "memory", "unified"} {
		if err := os.MkdirAll(filepath.Join(root, h), 0o755); err != nil {
			t.Fatal(err)
		}
		fstype, opts := "cgroup", "rw,"+h
		if h == "unified" {
			fstype, opts = "cgroup2", "rw"
		}
		lines = append(lines, fmt.Sprintf("%d 31 0:%d / %s rw,relatime - %s %s %s", 40+i, 30+i, filepath.Join(root, h), fstype, fstype, opts))
	}
	lines = append(lines, "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw")
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if err := os.WriteFile(filepath.Join(root, "cpuset", f), []byte("0-1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mountinfo = filepath.Join(dir, "mountinfo")
	if err := os.WriteFile(mountinfo, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, mountinfo
}

// TestRunDaemonJoinsCgroupsAndSession: the daemon's own PID is in the group's cgroup.procs
// of every hierarchy before it runs, and it leads a session of its own.
func TestRunDaemonJoinsCgroupsAndSession(t *testing.T) {
	root, mi := fakeCgroupTree(t)
	cg := &DaemonCgroup{Root: root, Name: "shiphold-mount-daemons", mountinfo: mi}
	// The fake cpuset group starts empty, as cgroupfs makes it; Ensure fills it from the parent.
	if err := os.MkdirAll(filepath.Join(root, "cpuset", cg.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if err := os.WriteFile(filepath.Join(root, "cpuset", cg.Name, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := SetDaemonCgroup(cg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetDaemonCgroup(nil) })

	// The "daemon" prints its PID and its session ID (field 6 of /proc/self/stat).
	out, err := New().RunDaemon(context.Background(), "sh", "-c", `echo $$; cut -d' ' -f6 /proc/$$/stat`)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("daemon printed %q", out)
	}
	pid, sid := f[0], f[1]
	if pid != sid {
		t.Errorf("daemon pid %s is in session %s, want a session of its own", pid, sid)
	}
	for _, h := range []string{"cpuset", "memory", "unified"} {
		data, err := os.ReadFile(filepath.Join(root, h, cg.Name, "cgroup.procs"))
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if strings.TrimSpace(string(data)) != pid {
			t.Errorf("%s/%s/cgroup.procs holds %q, want the daemon's pid %s", h, cg.Name, data, pid)
		}
	}
	if cpus, _ := os.ReadFile(filepath.Join(root, "cpuset", cg.Name, "cpuset.cpus")); strings.TrimSpace(string(cpus)) != "0-1" {
		t.Errorf("cpuset.cpus of the new group %q, want the parent's 0-1", cpus)
	}
	pids, err := cg.PIDs()
	if err != nil || len(pids) != 1 || strconv.Itoa(pids[0]) != pid {
		t.Errorf("PIDs() = %v, %v; want [%s]", pids, err, pid)
	}
}

// TestRunDaemonReportsACgroupItCannotJoin: a daemon is never started where the launcher was
// told to keep it out of, silently.
func TestRunDaemonReportsACgroupItCannotJoin(t *testing.T) {
	root, mi := fakeCgroupTree(t)
	cg := &DaemonCgroup{Root: root, Name: "daemons", mountinfo: mi}
	if err := SetDaemonCgroup(cg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetDaemonCgroup(nil) })
	// cgroup.procs as a directory: the write fails as on a read-only cgroupfs.
	if err := os.MkdirAll(filepath.Join(root, "memory", "daemons", "cgroup.procs"), 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	_, err := New().RunDaemon(context.Background(), "touch", marker)
	if err == nil || !strings.Contains(err.Error(), "cannot join cgroup") {
		t.Fatalf("RunDaemon = %v, want an error naming the cgroup it cannot join", err)
	}
	if _, serr := os.Stat(marker); serr == nil {
		t.Error("the daemon ran although it could not leave the plugin's cgroup")
	}
}

func TestRunDaemonWithoutCgroupIsRun(t *testing.T) {
	_ = SetDaemonCgroup(nil)
	out, err := New().RunDaemon(context.Background(), "echo", "hello")
	if err != nil || strings.TrimSpace(string(out)) != "hello" {
		t.Fatalf("RunDaemon = %q, %v", out, err)
	}
}
