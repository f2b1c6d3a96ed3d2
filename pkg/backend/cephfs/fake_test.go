package cephfs

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shiphold/shiphold/pkg/ceph"
)

// fakeMgr answers the mon and mgr JSON commands the controller sends, over an in-memory
// model of one filesystem, as Ceph 16.2 answers them (including the resize answer that
// go-ceph v0.37.0 misreads). It records every command for the workaround tests.
type fakeMgr struct {
	ceph.Calls
	mu    sync.Mutex
	cmds  []map[string]any
	fsOps []string // libcephfs calls (MDS requests): "getxattr /volumes/g/s"
	// entriesRead counts the directory entries read from group directories.
	entriesRead int
	seen        int // commands already returned by mgrCommands
	groups      map[string]bool
	subs        map[string]*fakeSub // key group/sub
	cloneRun    int                 // clone status answers "in-progress" this many times
	// cloneFail makes clones end "failed" instead of "complete".
	cloneFail bool
	// crashAfter names an operation ("fs subvolume create", "auth get-or-create",
	// "setxattr <name>", "readdir <path>") whose next answer is lost: it takes effect, and
	// the caller gets ETIMEDOUT, as when the controller dies or the link drops right after.
	crashAfter string
	// slow delays the answer to the named mgr commands, so that concurrent callers overlap.
	slow map[string]time.Duration
	// mon counts the mon commands by prefix.
	mon map[string]int
	// groupNS is each group directory's layout pool_namespace; auth the cephx users.
	groupNS map[string]string
	auth    map[string]fakeUser
	keys    int
	// tree is the filesystem outside /volumes (adoptdir_fake_test.go).
	tree map[string]*fakeDir
	// dirs are the directories' versions (key fs:path).
	dirs map[string]*fakeDirVersion
}

type fakeUser struct {
	key  string
	caps map[string]string
}

type fakeSub struct {
	poolNS   string // the layout namespace its group had when it was made
	quota    int64
	meta     map[string]string
	xattrs   map[string]string // on the base directory, which outlives a retained subvolume
	snaps    map[string]bool
	cloning  int // remaining in-progress answers
	source   [4]string
	retained bool
	failed   bool
	inUse    bool // clones from its snapshots in progress: rm answers EAGAIN
}

type fakeErr struct{ errno int }

func (e fakeErr) Error() string  { return syscall.Errno(-e.errno).Error() }
func (e fakeErr) ErrorCode() int { return e.errno }

func newFakeMgr() *fakeMgr {
	return &fakeMgr{groups: map[string]bool{}, subs: map[string]*fakeSub{}, groupNS: map[string]string{}, auth: map[string]fakeUser{}}
}

// lost answers ETIMEDOUT, once, for the operation crashAfter names.
func (f *fakeMgr) lost(op string, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || op != f.crashAfter {
		return err
	}
	f.crashAfter = ""
	return fakeErr{-int(syscall.ETIMEDOUT)}
}

func (f *fakeMgr) MonCommand(buf []byte) ([]byte, string, error) {
	var m map[string]any
	json.Unmarshal(buf, &m)
	p, _ := m["prefix"].(string)
	f.mu.Lock()
	if f.mon == nil {
		f.mon = map[string]int{}
	}
	f.mon[p]++
	f.mu.Unlock()
	out, status, err := f.monCommand(m)
	if err = f.lost(p, err); err != nil {
		return nil, status, err
	}
	return out, status, nil
}

func (f *fakeMgr) monCount(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mon[prefix]
}

func (f *fakeMgr) monCommand(m map[string]any) ([]byte, string, error) {
	switch m["prefix"] {
	case "fs dump":
		return []byte(`{"filesystems":[{"id":1,"mdsmap":{"fs_name":"cephfs"}},{"id":7,"mdsmap":{"fs_name":"other"}}]}`), "dumped fsmap epoch 3", nil
	case "fs ls":
		return []byte(`[{"name":"cephfs","data_pools":["cephfs.data"]}]`), "", nil
	case "df":
		return []byte(`{"pools":[{"name":"cephfs.data","stats":{"max_avail":1000}}]}`), "", nil
	}
	if p, _ := m["prefix"].(string); strings.HasPrefix(p, "auth ") {
		return f.authCommand(p, m)
	}
	return nil, "unknown", fakeErr{-int(syscall.EINVAL)}
}

// authCommand answers the auth commands as the monitor does.
func (f *fakeMgr) authCommand(prefix string, m map[string]any) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	entity := str(m, "entity")
	caps := map[string]string{}
	list, _ := m["caps"].([]any)
	for i := 0; i+1 < len(list); i += 2 {
		caps[list[i].(string)] = list[i+1].(string)
	}
	u, ok := f.auth[entity]
	switch prefix {
	case "auth get":
		if !ok {
			return nil, "", fakeErr{-int(syscall.ENOENT)}
		}
	case "auth get-or-create":
		// The monitor compares the cap types asked for, and keeps the others unchecked.
		for t, c := range caps {
			if have, found := u.caps[t]; ok && (!found || have != c) {
				return nil, "key for " + entity + " exists but cap " + t + " does not match", fakeErr{-int(syscall.EINVAL)}
			}
		}
		if !ok {
			f.keys++
			u = fakeUser{key: fmt.Sprintf("KEY-%s-%d", entity, f.keys), caps: caps}
			f.auth[entity] = u
		}
	case "auth caps":
		u.caps = caps
		f.auth[entity] = u
		return nil, "", nil
	case "auth rm":
		delete(f.auth, entity)
		return nil, "", nil
	}
	b, _ := json.Marshal([]map[string]any{{"entity": entity, "key": u.key, "caps": u.caps}})
	return b, "", nil
}

func (f *fakeMgr) commands(prefix string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, c := range f.cmds {
		if c["prefix"] == prefix {
			out = append(out, c)
		}
	}
	return out
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func (f *fakeMgr) MgrCommand(bufs [][]byte) ([]byte, string, error) {
	var m map[string]any
	if err := json.Unmarshal(bufs[0], &m); err != nil {
		return nil, "", fakeErr{-int(syscall.EINVAL)}
	}
	f.mu.Lock()
	delay := f.slow[str(m, "prefix")]
	f.mu.Unlock()
	time.Sleep(delay)
	out, status, err := f.mgrCommand(m)
	if err = f.lost(str(m, "prefix"), err); err != nil {
		return nil, status, err
	}
	return out, status, nil
}

func (f *fakeMgr) mgrCommand(m map[string]any) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, m)
	g, name := str(m, "group_name"), str(m, "sub_name")
	key := g + "/" + name
	sub := f.subs[key]
	enoent := func(what string) ([]byte, string, error) {
		return nil, what + " does not exist", fakeErr{-int(syscall.ENOENT)}
	}
	busy := func() ([]byte, string, error) {
		return nil, fmt.Sprintf("subvolume '%s' is not ready for operation", name), fakeErr{-int(syscall.EAGAIN)}
	}
	switch p := str(m, "prefix"); p {
	case "fs volume ls":
		return []byte(`[{"name":"cephfs"}]`), "", nil
	case "fs subvolumegroup create":
		f.groups[str(m, "group_name")] = true
		return nil, "", nil
	case "fs subvolumegroup ls":
		if str(m, "vol_name") != "cephfs" {
			return []byte("[]"), "", nil
		}
		var out []map[string]string
		for n := range f.groups {
			out = append(out, map[string]string{"name": n})
		}
		b, _ := json.Marshal(out)
		return b, "", nil
	case "fs subvolume create":
		if !f.groups[g] {
			return enoent("group " + g)
		}
		size, _ := m["size"].(float64)
		made := &fakeSub{poolNS: f.groupNS[g], quota: int64(size), meta: map[string]string{}, xattrs: map[string]string{}, snaps: map[string]bool{}}
		if sub != nil && sub.retained {
			// A retained subvolume made anew keeps its base directory and snapshots.
			made.xattrs, made.snaps = sub.xattrs, sub.snaps
		} else if sub != nil {
			return nil, "", fakeErr{-int(syscall.EEXIST)} // not reached: shiphold reads first
		}
		f.subs[key] = made
		return nil, "", nil
	case "fs subvolume ls":
		if str(m, "vol_name") != "cephfs" {
			return []byte("[]"), "", nil
		}
		if !f.groups[g] {
			return enoent("group " + g)
		}
		var out []map[string]string
		for k := range f.subs {
			if gg, n, _ := strings.Cut(k, "/"); gg == g {
				out = append(out, map[string]string{"name": n})
			}
		}
		b, _ := json.Marshal(out)
		return b, "", nil
	}
	if str(m, "prefix") == "fs clone status" || str(m, "prefix") == "fs clone cancel" {
		name = str(m, "clone_name")
		sub = f.subs[g+"/"+name]
	}
	if sub == nil || (sub.retained && !strings.Contains(str(m, "prefix"), "snapshot")) {
		return enoent("subvolume " + name)
	}
	switch p := str(m, "prefix"); p {
	case "fs subvolume rm":
		if sub.cloning > 0 && m["force"] != true || sub.inUse {
			return busy()
		}
		switch {
		case len(sub.snaps) > 0 && m["retain_snapshots"] != true:
			// Ceph 16.2 (subvolume_v2.remove): snapshots are kept only when asked.
			return nil, fmt.Sprintf("subvolume '%s' has snapshots", key), fakeErr{-int(syscall.ENOTEMPTY)}
		case len(sub.snaps) > 0:
			sub.retained, sub.meta = true, map[string]string{}
		default:
			delete(f.subs, key)
		}
		return nil, "", nil
	case "fs subvolume resize":
		if sub.cloning > 0 {
			return busy()
		}
		n, _ := fmt.Sscan(str(m, "new_size"), &sub.quota)
		_ = n
		// Ceph 16.2's answer: a list of one-key objects.
		return []byte(fmt.Sprintf(`[{"bytes_used": 0}, {"bytes_quota": %d}, {"bytes_pcent": "0.00"}]`, sub.quota)), "", nil
	case "fs subvolume getpath":
		return []byte("/volumes/" + key + "/uuid\n"), "", nil
	case "fs subvolume info":
		if sub.cloning > 0 {
			return busy()
		}
		return []byte(fmt.Sprintf(`{"path":"/volumes/%s/uuid","state":"complete","bytes_quota":%d,"created_at":"2026-01-02 03:04:05","data_pool":"cephfs.data","pool_namespace":%q}`, key, sub.quota, sub.poolNS)), "", nil
	case "fs subvolume metadata set":
		if sub.cloning > 0 {
			return busy()
		}
		sub.meta[str(m, "key_name")] = str(m, "value")
		return nil, "", nil
	case "fs subvolume metadata ls":
		if sub.cloning > 0 {
			return busy()
		}
		b, _ := json.Marshal(sub.meta)
		return b, "", nil
	case "fs subvolume snapshot create":
		sub.snaps[str(m, "snap_name")] = true
		return nil, "", nil
	case "fs subvolume snapshot rm":
		if !sub.snaps[str(m, "snap_name")] {
			return enoent("snapshot")
		}
		delete(sub.snaps, str(m, "snap_name"))
		if sub.retained && len(sub.snaps) == 0 {
			delete(f.subs, key)
		}
		return nil, "", nil
	case "fs subvolume snapshot ls":
		var out []map[string]string
		for n := range sub.snaps {
			out = append(out, map[string]string{"name": n})
		}
		b, _ := json.Marshal(out)
		return b, "", nil
	case "fs subvolume snapshot info":
		if !sub.snaps[str(m, "snap_name")] {
			return enoent("snapshot")
		}
		return []byte(`{"created_at":"2026-01-02 03:04:05.123456","has_pending_clones":"no"}`), "", nil
	case "fs subvolume snapshot clone":
		if !sub.snaps[str(m, "snap_name")] {
			return enoent("snapshot")
		}
		tg := str(m, "target_group_name")
		if tg == "" {
			tg = g
		}
		tkey := tg + "/" + str(m, "target_sub_name")
		if f.subs[tkey] != nil {
			return nil, "subvolume exists", fakeErr{-int(syscall.EEXIST)}
		}
		f.subs[tkey] = &fakeSub{quota: sub.quota, meta: map[string]string{}, xattrs: map[string]string{}, snaps: map[string]bool{}, cloning: f.cloneRun,
			source: [4]string{"cephfs", g, name, str(m, "snap_name")}, failed: f.cloneFail}
		return nil, "", nil
	case "fs clone status":
		if sub.source[0] == "" {
			return nil, "operation 'clone-status' is not allowed on subvolume", fakeErr{-int(syscall.ENOTSUP)}
		}
		state := "complete"
		if sub.failed {
			state = "failed"
		}
		if sub.cloning > 0 {
			sub.cloning--
			state = "in-progress"
		}
		return []byte(fmt.Sprintf(`{"status":{"state":%q,"source":{"volume":%q,"group":%q,"subvolume":%q,"snapshot":%q}}}`,
			state, sub.source[0], sub.source[1], sub.source[2], sub.source[3])), "", nil
	case "fs clone cancel":
		sub.cloning = 0
		return nil, "", nil
	}
	return nil, "unknown command", fakeErr{-int(syscall.EINVAL)}
}

// baseDir finds the subvolume whose base directory is path (/volumes/<group>/<sub>).
// groupDir reports whether path is an existing group's directory.
func (f *fakeMgr) groupDir(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/volumes/")
	if !ok || strings.Contains(rest, "/") || !f.groups[rest] {
		return "", false
	}
	f.fsOps = append(f.fsOps, "group "+path)
	return rest, true
}

// dataDir finds the subvolume whose data directory is path (/volumes/<group>/<sub>/uuid;
// gone once the subvolume is retained).
func (f *fakeMgr) dataDir(path string) (*fakeSub, bool) {
	base, dir, ok := strings.Cut(strings.TrimPrefix(path, "/volumes/"), "/uuid")
	if !ok || dir != "" || strings.Count(base, "/") != 1 {
		return nil, false
	}
	sub := f.subs[base]
	return sub, sub != nil && !sub.retained
}

func (f *fakeMgr) baseDir(op, path string) (*fakeSub, error) {
	f.fsOps = append(f.fsOps, op+" "+path)
	rest, ok := strings.CutPrefix(path, "/volumes/")
	if !ok || strings.Count(rest, "/") != 1 {
		return nil, fakeErr{-int(syscall.ENOTSUP)} // the controller touches base directories only
	}
	sub := f.subs[rest]
	if sub == nil {
		return nil, fakeErr{-int(syscall.ENOENT)}
	}
	if sub.xattrs == nil {
		sub.xattrs = map[string]string{}
	}
	return sub, nil
}

func (f *fakeMgr) GetXattr(fs, path, name string) (_ []byte, err error) {
	defer func() { err = f.lost("getxattr "+name, err) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	if isPlain(path) {
		return f.plainGetXattr(fs, path, name)
	}
	if g, ok := f.groupDir(path); ok {
		if name == "ceph.dir.layout.pool" && f.groupNS[g] != "" {
			return []byte("cephfs.data"), nil
		}
		return nil, fakeErr{-int(syscall.ENODATA)}
	}
	if sub, ok := f.dataDir(path); ok {
		f.fsOps = append(f.fsOps, "getxattr "+path)
		if name != "ceph.quota.max_bytes" {
			return nil, fakeErr{-int(syscall.ENODATA)}
		}
		if sub.quota == 0 {
			return nil, fakeErr{-int(syscall.ENODATA)} // as Ceph answers for a directory without one
		}
		return []byte(fmt.Sprint(sub.quota)), nil
	}
	sub, err := f.baseDir("getxattr", path)
	if err != nil {
		return nil, err
	}
	if name == "ceph.dir.rsnaps" { // a virtual attribute: the snapshots under the directory
		return []byte(fmt.Sprint(len(sub.snaps))), nil
	}
	v, ok := sub.xattrs[name]
	if !ok {
		return nil, fakeErr{-int(syscall.ENODATA)}
	}
	return []byte(v), nil
}

func (f *fakeMgr) SetXattr(fs, path, name string, value []byte) (err error) {
	defer func() { err = f.lost("setxattr "+name, err) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	if isPlain(path) {
		return f.plainSetXattr(fs, path, name, string(value))
	}
	if g, ok := f.groupDir(path); ok {
		if name != "ceph.dir.layout.pool_namespace" {
			return fakeErr{-int(syscall.ENOTSUP)}
		}
		f.groupNS[g] = string(value)
		return nil
	}
	sub, err := f.baseDir("setxattr", path)
	if err != nil {
		return err
	}
	sub.xattrs[name] = string(value)
	return nil
}

// groupEntries lists a group directory's subvolumes, sorted as a readdir returns them.
func (f *fakeMgr) groupEntries(g string) []string {
	var out []string
	for k := range f.subs {
		if sg, sub, _ := strings.Cut(k, "/"); sg == g {
			out = append(out, sub)
		}
	}
	sort.Strings(out)
	return out
}

// FindSubdir reads a directory as Subdirs does, and stops at the first entry match takes.
func (f *fakeMgr) FindSubdir(fs, path string, match func(string) bool) (_ string, err error) {
	defer func() { err = f.lost("readdir "+path, err) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	var entries []string
	if fs != "cephfs" && isGroupPath(path) {
		return "", fakeErr{-int(syscall.ENOENT)} // the fake's groups are on filesystem cephfs
	}
	if g, ok := f.groupDir(path); ok {
		entries = f.groupEntries(g)
	} else if isPlain(path) {
		if entries, err = f.plainSubdirs(fs, path); err != nil {
			return "", err
		}
		sort.Strings(entries)
	} else {
		return "", fakeErr{-int(syscall.ENOENT)}
	}
	for _, e := range entries {
		f.entriesRead++
		if match(e) {
			return e, nil
		}
	}
	return "", nil
}

// isGroupPath says whether path names a group's directory, existing or not.
func isGroupPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/volumes/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// Subdirs lists a directory: /volumes, a group, a base directory (the data directory, gone
// once the subvolume is retained) or one of the plain tree.
func (f *fakeMgr) Subdirs(fs, path string) (_ []string, err error) {
	defer func() { err = f.lost("readdir "+path, err) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	out, err := f.subdirs(fs, path)
	if isGroupPath(path) && err == nil {
		f.entriesRead += len(out)
	}
	return out, err
}

// DirVersion is a directory's version as the MDS keeps it: raised with every change of its
// entries. The fake raises it when it finds the entries changed since its last answer for
// the directory, which is what a caller can see of the MDS's.
func (f *fakeMgr) DirVersion(fs, path string) (ceph.DirVersion, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fsOps = append(f.fsOps, "statx "+path)
	out, err := f.subdirs(fs, path)
	if err != nil {
		return ceph.DirVersion{}, err
	}
	sort.Strings(out)
	key, now := fs+":"+path, strings.Join(out, "/")
	if f.dirs == nil {
		f.dirs = map[string]*fakeDirVersion{}
	}
	d := f.dirs[key]
	if d == nil {
		d = &fakeDirVersion{ino: uint64(len(f.dirs) + 1), entries: now}
		f.dirs[key] = d
	}
	if d.entries != now {
		d.change++
		d.entries = now
	}
	return ceph.DirVersion{Ino: d.ino, Change: d.change, BornNs: 1}, nil
}

type fakeDirVersion struct {
	ino, change uint64
	entries     string
}

func (f *fakeMgr) subdirs(fs, path string) (_ []string, err error) {
	if isPlain(path) {
		return f.plainSubdirs(fs, path)
	}
	if path == subvolumesDir {
		if fs != "cephfs" { // the fake's groups are on filesystem cephfs; "other" has none
			return nil, nil
		}
		var out []string
		for g := range f.groups {
			out = append(out, g)
		}
		return out, nil
	}
	if fs != "cephfs" && isGroupPath(path) {
		return nil, fakeErr{-int(syscall.ENOENT)} // the fake's groups are on filesystem cephfs
	}
	if g, ok := f.groupDir(path); ok {
		return f.groupEntries(g), nil
	}
	if isGroupPath(path) {
		return nil, fakeErr{-int(syscall.ENOENT)} // a group that does not exist
	}
	sub, err := f.baseDir("readdir", path)
	if err != nil || sub.retained {
		return nil, err
	}
	return []string{"uuid"}, nil
}

// mgrCommands are the prefixes of the mgr commands sent since the call before.
func (f *fakeMgr) mgrCommands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.cmds[f.seen:] {
		out = append(out, str(c, "prefix"))
	}
	f.seen = len(f.cmds)
	return out
}
