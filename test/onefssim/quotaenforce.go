package onefssim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Hard quota enforcement. OneFS enforces a directory quota's hard threshold in its
// filesystem: a write through NFS past it fails with EDQUOT. The simulator's tree is a
// plain directory that nfs-ganesha serves with FSAL VFS, so enforcement must come from
// the kernel too. This kernel has quotas for btrfs only (qgroups; ext4/xfs quotas are
// not built in), and a btrfs qgroup limits a subvolume, not any directory. So an
// enforced hard quota turns its directory into a subvolume (moving the content over),
// sets the subvolume's qgroup limit to the threshold, and bind-mounts the subvolume onto
// itself: Debian's ganesha 4.3 (built without btrfsutil) can only export a subvolume that
// appears in the mount table.

const (
	btrfsSuperMagic   = 0x9123683e
	btrfsSubvolRootIn = 256 // inode number of every subvolume's root directory
)

type quotaEnforcer struct {
	root string

	mu     sync.Mutex
	mounts map[string]bool // absolute paths bind-mounted onto themselves
}

func newQuotaEnforcer(root string) (*quotaEnforcer, error) {
	var sf syscall.Statfs_t
	if err := syscall.Statfs(root, &sf); err != nil {
		return nil, err
	}
	if uint32(sf.Type) != btrfsSuperMagic {
		return nil, fmt.Errorf("onefssim: EnforceHardQuotas needs Root on btrfs (see NewBtrfsRoot); %s is not", root)
	}
	if out, err := exec.Command("btrfs", "quota", "enable", root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("onefssim: btrfs quota enable %s: %v: %s (apt-get install btrfs-progs; run as root)", root, err, out)
	}
	return &quotaEnforcer{root: root, mounts: map[string]bool{}}, nil
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// apply makes writes below rel fail once they pass hard bytes.
func (q *quotaEnforcer) apply(rel string, hard int64) error {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	abs := filepath.Join(q.root, rel)
	if err := q.makeSubvolume(abs); err != nil {
		return err
	}
	if err := run("btrfs", "qgroup", "limit", strconv.FormatInt(hard, 10), abs); err != nil {
		return err
	}
	if !q.mounts[abs] {
		if err := run("mount", "--bind", abs, abs); err != nil {
			return err
		}
		q.mounts[abs] = true
	}
	return nil
}

// makeSubvolume turns the directory abs into a btrfs subvolume with the same content,
// mode and owner (a no-op when it is one already).
func (q *quotaEnforcer) makeSubvolume(abs string) error {
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Ino == btrfsSubvolRootIn {
		return nil
	}
	tmp := abs + ".onefssim-subvol"
	_ = os.RemoveAll(tmp)
	if err := run("btrfs", "subvolume", "create", tmp); err != nil {
		return err
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return err
	}
	if len(ents) > 0 { // renames cannot cross subvolumes; reflink copies are cheap
		if err := run("cp", "-a", "--reflink=auto", abs+"/.", tmp+"/"); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(abs); err != nil {
		return err
	}
	if err := os.Rename(tmp, abs); err != nil {
		return err
	}
	if err := os.Chmod(abs, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Chown(abs, int(st.Uid), int(st.Gid))
}

// unlimit removes the threshold of rel (the subvolume stays).
func (q *quotaEnforcer) unlimit(rel string) {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	abs := filepath.Join(q.root, rel)
	if fi, err := os.Stat(abs); err == nil && fi.Sys().(*syscall.Stat_t).Ino == btrfsSubvolRootIn {
		_ = run("btrfs", "qgroup", "limit", "none", abs)
	}
}

// release unmounts the bind mounts at or below rel, before it is removed.
func (q *quotaEnforcer) release(rel string) {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.unmountBelow(filepath.Join(q.root, rel))
}

func (q *quotaEnforcer) unmountBelow(abs string) {
	var paths []string
	for p := range q.mounts {
		if p == abs || strings.HasPrefix(p, abs+"/") {
			paths = append(paths, p)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths))) // deepest first
	for _, p := range paths {
		if run("umount", p) != nil {
			_ = run("umount", "-l", p)
		}
		delete(q.mounts, p)
	}
}

func (q *quotaEnforcer) close() {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.unmountBelow(q.root)
}

// reapplyQuotas restores enforcement for quotas loaded from the state (mounts do not
// survive a restart; qgroup limits do).
func (s *Server) reapplyQuotas() {
	for _, qt := range s.st.Quotas {
		s.enforce(qt)
	}
}

// enforce brings the kernel limit of qt's directory in line with qt.
func (s *Server) enforce(qt *Quota) {
	if s.quota == nil || qt.Type != "directory" {
		return
	}
	loc, err := resolveIfs(qt.Path)
	if err != nil {
		return
	}
	if qt.Enforced && qt.Hard != nil && *qt.Hard > 0 {
		if err := s.quota.apply(loc.rel, *qt.Hard); err != nil {
			s.opts.Logger.Printf("onefssim: enforce quota on %s: %v", qt.Path, err)
		}
		return
	}
	s.quota.unlimit(loc.rel)
}

// NewBtrfsRoot makes a loop-mounted btrfs filesystem of size bytes below dir, with quotas
// enabled, and returns a directory on it to use as Options.Root. cleanup unmounts it
// (stop nfs-ganesha and Close the simulator first). It needs root, mkfs.btrfs and btrfs
// (apt-get install btrfs-progs).
func NewBtrfsRoot(dir string, size int64) (root string, cleanup func() error, err error) {
	img, mnt := filepath.Join(dir, "btrfs.img"), filepath.Join(dir, "btrfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", nil, err
	}
	f, err := os.Create(img)
	if err == nil {
		err = errors.Join(f.Truncate(size), f.Close())
	}
	if err != nil {
		return "", nil, err
	}
	if err := run("mkfs.btrfs", "-q", img); err != nil {
		return "", nil, fmt.Errorf("%w (apt-get install btrfs-progs)", err)
	}
	if err := run("mount", "-o", "loop", img, mnt); err != nil {
		return "", nil, err
	}
	cleanup = func() error {
		var err error
		for i := 0; i < 20; i++ {
			if err = run("umount", mnt); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			err = run("umount", "-l", mnt)
		}
		return errors.Join(err, os.Remove(img))
	}
	root = filepath.Join(mnt, "ifs")
	if err := errors.Join(run("btrfs", "quota", "enable", mnt), os.Mkdir(root, 0o755), os.Chmod(mnt, 0o755)); err != nil {
		return "", nil, errors.Join(err, cleanup())
	}
	return root, cleanup, nil
}
