package mounter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Mount daemons (ceph-fuse, rbd-fuse, rbd-nbd) serve their mounts for as long as pods use
// them, longer than any one node plugin process. When the plugin's container restarts, its
// runtime kills every process in the container's cgroup (and, with a PID namespace of its
// own, in that namespace); a daemon killed there leaves every pod on it with a dead mount.
//
// So daemons start through a launcher that moves them, before they exec, into a host cgroup
// of their own in every mounted hierarchy (out of reach of the container's kill and of its
// memory limit) and into a session of their own. This needs the host's cgroup filesystem
// writable (a privileged container with /sys from the host) and the host's PID namespace
// (hostPID: the plugin finds its daemons in /proc, and a namespace's end kills all in it).
// systemd-run --scope would do the same where systemd runs and its bus is reachable; a
// node plugin container rarely has either, and this machine has no systemd at all.

// DaemonCgroup is a control group by name, present in every cgroup hierarchy mounted under
// Root (cgroup v1 controllers, the v2 unified tree, or both).
type DaemonCgroup struct {
	Root string // /sys/fs/cgroup
	Name string // e.g. shiphold-mount-daemons
	// mountinfo is /proc/self/mountinfo; tests point it at a fake.
	mountinfo string
}

// DefaultDaemonCgroup is where the node plugin puts its mount daemons unless told otherwise.
const DefaultDaemonCgroup = "shiphold-mount-daemons"

var (
	daemonMu     sync.RWMutex
	daemonCgroup *DaemonCgroup
)

// SetDaemonCgroup makes every Mounter start daemons in cg (nil: in the plugin's own cgroup,
// as children of the plugin). It creates the group in every hierarchy first, so that a
// host that does not allow it is known at start rather than at the first mount.
func SetDaemonCgroup(cg *DaemonCgroup) error {
	if cg != nil {
		if _, err := cg.Ensure(); err != nil {
			return err
		}
	}
	daemonMu.Lock()
	defer daemonMu.Unlock()
	daemonCgroup = cg
	return nil
}

func currentDaemonCgroup() *DaemonCgroup {
	daemonMu.RLock()
	defer daemonMu.RUnlock()
	return daemonCgroup
}

// launchScript joins the cgroups listed (colon-separated) in $SHIPHOLD_DAEMON_CGROUPS, then
// becomes the daemon in a new session: the move happens before the daemon runs, so no
// process it forks is left behind in the plugin's cgroup.
const launchScript = `IFS=:
for f in $SHIPHOLD_DAEMON_CGROUPS; do
  echo $$ >"$f" || { echo "cannot join cgroup $f" >&2; exit 125; }
done
unset IFS SHIPHOLD_DAEMON_CGROUPS
exec setsid "$@"`

// RunDaemon runs a command that leaves a daemon behind (ceph-fuse, rbd-fuse, rbd-nbd map)
// like Run, but through the launcher when a daemon cgroup is set.
func (m *Mounter) RunDaemon(ctx context.Context, name string, args ...string) ([]byte, error) {
	cg := currentDaemonCgroup()
	if cg == nil {
		return m.Run(ctx, name, args...)
	}
	procs, err := cg.Ensure()
	if err != nil {
		return nil, err
	}
	cmd := m.Exec.CommandContext(ctx, "sh", append([]string{"-c", launchScript, "shiphold-launch", name}, args...)...)
	cmd.SetEnv(append(os.Environ(), "SHIPHOLD_DAEMON_CGROUPS="+strings.Join(procs, ":")))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return out, fmt.Errorf("%s %s: %w (%v)", name, strings.Join(args, " "), ctx.Err(), err)
		}
		return out, fmt.Errorf("%s %s (in cgroup %s): %v: %s", name, strings.Join(args, " "), cg.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Ensure creates the group in every hierarchy and returns the cgroup.procs files to join.
func (cg *DaemonCgroup) Ensure() ([]string, error) {
	hier, err := cg.hierarchies()
	if err != nil {
		return nil, err
	}
	if len(hier) == 0 {
		return nil, fmt.Errorf("daemon cgroup %s: no cgroup hierarchy is mounted below %s", cg.Name, cg.Root)
	}
	var procs []string
	for _, h := range hier {
		dir := filepath.Join(h, cg.Name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("daemon cgroup: create %s: %w (the node plugin needs the host's cgroup filesystem writable: privileged, with /sys from the host)", dir, err)
		}
		if err := inheritCpuset(h, dir); err != nil {
			return nil, err
		}
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	return procs, nil
}

// PIDs lists the processes in the group, in any hierarchy.
func (cg *DaemonCgroup) PIDs() ([]int, error) {
	hier, err := cg.hierarchies()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var out []int
	for _, h := range hier {
		data, err := os.ReadFile(filepath.Join(h, cg.Name, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	return out, nil
}

// hierarchies lists the cgroup mounts below Root, one per hierarchy (named v1 hierarchies
// such as name=systemd included).
func (cg *DaemonCgroup) hierarchies() ([]string, error) {
	mi := cg.mountinfo
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	f, err := os.Open(mi)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	root := filepath.Clean(cg.Root)
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices"
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		fstype, mp := fields[sep+1], fields[4]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		if mp != root && !strings.HasPrefix(mp, root+"/") {
			continue
		}
		// A hierarchy mounted twice (co-mounted controllers' links) counts once.
		if !seen[fields[2]] {
			seen[fields[2]] = true
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// inheritCpuset gives a new v1 cpuset group its parent's CPUs and memory nodes: an empty
// cpuset takes no task.
func inheritCpuset(hierarchy, dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, os.ErrNotExist) {
			return nil // not the cpuset hierarchy
		}
		if err != nil || strings.TrimSpace(string(cur)) != "" {
			continue
		}
		parent, err := os.ReadFile(filepath.Join(hierarchy, f))
		if err != nil {
			return fmt.Errorf("daemon cgroup: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
			return fmt.Errorf("daemon cgroup: %s: %w", filepath.Join(dir, f), err)
		}
	}
	return nil
}
