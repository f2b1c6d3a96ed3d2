package cephfs

import (
	"path"
	"strconv"
	"strings"
	"syscall"
)

// fakeDir is a directory (or, with file set, a file) of the fake filesystem outside the
// mgr's /volumes tree, as libcephfs shows it: user attributes, a quota that reads as
// ENODATA when unset, and the bytes of the files directly in it (rbytes adds the subtree).
type fakeDir struct {
	xattrs map[string]string
	bytes  int64
	file   bool
}

// isPlain says whether path is outside the mgr's /volumes tree.
func isPlain(p string) bool { return p != subvolumesDir && !strings.HasPrefix(p, subvolumesDir+"/") }

// plainNode finds path of filesystem fs; the root always exists. The tree is filesystem
// cephfs's; "other" is empty. Called with f.mu held.
func (f *fakeMgr) plainNode(fs, p string) (*fakeDir, error) {
	if fs != "cephfs" {
		return nil, fakeErr{-int(syscall.ENOENT)}
	}
	if f.tree == nil {
		f.tree = map[string]*fakeDir{}
	}
	if p == "/" && f.tree["/"] == nil {
		f.tree["/"] = &fakeDir{xattrs: map[string]string{}}
	}
	d := f.tree[p]
	if d == nil {
		return nil, fakeErr{-int(syscall.ENOENT)}
	}
	return d, nil
}

// plantDir makes a directory with its parents holding bytes of files, for the tests.
func (f *fakeMgr) plantDir(p string, bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.makeDirs(p)
	f.tree[p].bytes = bytes
}

func (f *fakeMgr) plantFile(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.makeDirs(path.Dir(p))
	f.tree[p] = &fakeDir{file: true, xattrs: map[string]string{}}
}

func (f *fakeMgr) makeDirs(p string) {
	f.plainNode("cephfs", "/")
	for q := p; q != "/"; q = path.Dir(q) {
		if f.tree[q] == nil {
			f.tree[q] = &fakeDir{xattrs: map[string]string{}}
		}
	}
}

func (f *fakeMgr) plainGetXattr(fs, p, name string) ([]byte, error) {
	f.fsOps = append(f.fsOps, "getxattr "+p)
	d, err := f.plainNode(fs, p)
	if err != nil {
		return nil, err
	}
	if name == rbytesXattr && !d.file {
		n := int64(0)
		for q, e := range f.tree {
			if q == p || strings.HasPrefix(q, strings.TrimSuffix(p, "/")+"/") {
				n += e.bytes
			}
		}
		return []byte(strconv.FormatInt(n, 10)), nil
	}
	v, ok := d.xattrs[name]
	if !ok || d.file && strings.HasPrefix(name, "ceph.dir.") {
		return nil, fakeErr{-int(syscall.ENODATA)}
	}
	return []byte(v), nil
}

func (f *fakeMgr) plainSetXattr(fs, p, name, value string) error {
	f.fsOps = append(f.fsOps, "setxattr "+p)
	d, err := f.plainNode(fs, p)
	if err != nil {
		return err
	}
	if name == quotaXattr && value == "0" {
		delete(d.xattrs, name) // a zero quota is none
		return nil
	}
	d.xattrs[name] = value
	return nil
}

func (f *fakeMgr) plainSubdirs(fs, p string) ([]string, error) {
	if _, err := f.plainNode(fs, p); err != nil {
		return nil, err
	}
	var out []string
	for q, e := range f.tree {
		if q != "/" && path.Dir(q) == p && !e.file {
			out = append(out, path.Base(q))
		}
	}
	return out, nil
}

func (f *fakeMgr) MakeDirs(fs, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !isPlain(p) {
		return fakeErr{-int(syscall.ENOTSUP)} // the controller makes no directory in /volumes
	}
	f.fsOps = append(f.fsOps, "mkdirs "+p)
	if fs != "cephfs" {
		return fakeErr{-int(syscall.ENOENT)}
	}
	f.makeDirs(p)
	return nil
}

func (f *fakeMgr) RemoveDir(fs, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !isPlain(p) {
		return fakeErr{-int(syscall.ENOTSUP)}
	}
	f.fsOps = append(f.fsOps, "rmdir "+p)
	if _, err := f.plainNode(fs, p); err != nil {
		return err
	}
	for q := range f.tree {
		if strings.HasPrefix(q, p+"/") {
			return fakeErr{-int(syscall.ENOTEMPTY)}
		}
	}
	delete(f.tree, p)
	return nil
}

func (f *fakeMgr) RemoveXattr(fs, p, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !isPlain(p) {
		return fakeErr{-int(syscall.ENOTSUP)}
	}
	f.fsOps = append(f.fsOps, "removexattr "+p)
	d, err := f.plainNode(fs, p)
	if err != nil {
		return err
	}
	if _, ok := d.xattrs[name]; !ok {
		return fakeErr{-int(syscall.ENODATA)}
	}
	delete(d.xattrs, name)
	return nil
}
