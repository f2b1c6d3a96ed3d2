package rbd

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/ceph/cephtest"
)

// fakeCluster is an in-memory Ceph cluster as librbd and the mgr's rbd_support module show
// it to the controller: pools with RADOS namespaces, images with metadata, snapshots,
// clones, watchers and a trash, and the mgr's task queue. It logs every call ("CreateImage
// ns/name") so that tests count round trips, and fails the calls named in fail.
type fakeCluster struct {
	ceph.Calls
	mu    sync.Mutex
	pools map[string]*fakePool
	tasks []fakeTask
	// finished are the last 50 tasks the mgr finished: it answers an add of one of them
	// with it (rbd_support's guard against a replayed command) and queues nothing.
	finished []fakeTask
	nextID   int
	calls    []string
	// fail maps a call name ("CreateImage", "OpenImage", "MgrCommand", ...) to the error
	// it answers, once per entry in the slice.
	fail map[string][]error
	// holdTasks leaves the mgr's tasks queued until runTasks, as a busy mgr would.
	holdTasks   bool
	blocklisted []string
	self        uint64
	replaced    []string // why the controller had its client replaced (Replace), in order
	retired     []uint64 // the clients Replace retired
	auth        *cephtest.Auth
	// midChildren runs (f.mu held) between Children's two reads, as librbd makes them:
	// the snapshot's attached clones from the parent header, then their names from the
	// image directory and the trash.
	midChildren func()
	// namesRead counts the image names read from image directories, by ImageNames and
	// ImageNamesAfter.
	namesRead int
	// headerDelay, when set, makes every read of an image's header (ReadHeader) take that
	// long outside the fake's lock, as a round trip does; reading and maxReading count the
	// reads under way.
	headerDelay         time.Duration
	reading, maxReading atomic.Int32
	// listDelay does the same for every full read of an image directory (ImageNames).
	listDelay           time.Duration
	listing, maxListing atomic.Int32
}

// under runs for d outside the fake's lock as one of the calls cur counts, and keeps in most
// how many ran at once.
func under(d time.Duration, cur, most *atomic.Int32) {
	n := cur.Add(1)
	for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
	}
	time.Sleep(d)
	cur.Add(-1)
}

type fakePool struct {
	id     int64
	name   string
	spaces map[string]bool       // RADOS namespaces holding an RBD directory
	images map[string]*fakeImage // "ns/name"
	trash  map[string]*fakeImage // "ns/id"
	nsList bool                  // an RBD pool (rbd pool init): lists namespaces
	avail  int64
}

type fakeImage struct {
	id, name, ns string
	pool         *fakePool
	size         uint64
	features     uint64
	meta         map[string]string
	snaps        []*fakeSnap
	parent       *librbd.ParentInfo
	watchers     []fakeWatcher
	nextSnap     uint64
	// outlivesPurge is a trash entry that stays when the mgr's purge of it finishes (a
	// retried delete moved its name to the trash again as the purge ran).
	outlivesPurge bool
}

type fakeSnap struct {
	id        uint64
	name      string
	size      uint64
	protected bool
	// unprotecting is librbd's RBD_PROTECTION_STATUS_UNPROTECTING: an unprotect set it and
	// its process died before it looked for children and set the end state.
	unprotecting bool
	trashed      bool // in librbd's snapshot trash namespace
	at           time.Time
}

type fakeWatcher struct {
	w    librbd.ImageWatcher
	live bool // answers a notify; a stale record does not
}

type fakeTask struct {
	mgrTask
	spec string
	// backingOff is a failed task the mgr runs again only at its retry time (30 s times
	// its attempts, up to 5 min): runTasks passes it over.
	backingOff bool
}

type fakeErrno int

func (e fakeErrno) Error() string  { return syscall.Errno(e).Error() }
func (e fakeErrno) ErrorCode() int { return -int(e) }

var (
	errNoEnt = librbd.ErrNotFound
	errExist = librbd.ErrExist
	errBusy  = fakeErrno(syscall.EBUSY)
	// errOpNoEnt is a missing object as a compound RADOS operation (ReadOp.Operate)
	// reports it: an OperationError, which wraps the errno without an Unwrap.
	errOpNoEnt = rados.OperationError{OpError: rados.ErrNotFound}
)

func newFakeCluster() *fakeCluster {
	f := &fakeCluster{pools: map[string]*fakePool{}, fail: map[string][]error{}, self: 4100, auth: cephtest.NewAuth()}
	f.addPool("rbd", true)
	f.addPool("cephfs.data", false)
	return f
}

func (f *fakeCluster) addPool(name string, rbd bool) *fakePool {
	p := &fakePool{id: int64(len(f.pools) + 1), name: name, spaces: map[string]bool{"": true}, images: map[string]*fakeImage{}, trash: map[string]*fakeImage{}, nsList: rbd, avail: 1 << 40}
	f.pools[name] = p
	return p
}

// call logs a call and answers the failure injected for it, if any. Callers hold f.mu.
func (f *fakeCluster) call(name, arg string) error {
	f.calls = append(f.calls, name+" "+arg)
	if errs := f.fail[name]; len(errs) > 0 {
		f.fail[name] = errs[1:]
		return errs[0]
	}
	return nil
}

// failNext makes the next call of name answer err.
func (f *fakeCluster) failNext(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[name] = append(f.fail[name], err)
}

// count says how many calls of name were made; resetCalls forgets them.
func (f *fakeCluster) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, name+" ") {
			n++
		}
	}
	return n
}

func (f *fakeCluster) resetCalls() {
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
}

// image returns an image by pool, namespace and name (nil when absent).
func (f *fakeCluster) image(pool, ns, name string) *fakeImage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pools[pool].images[ns+"/"+name]
}

func (f *fakeCluster) trashed(pool, ns string) []*fakeImage {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeImage
	for _, img := range f.pools[pool].trash {
		if img.ns == ns {
			out = append(out, img)
		}
	}
	return out
}

func (f *fakeCluster) OpenPool(name string) (ioctx, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("OpenPool", name); err != nil {
		return nil, err
	}
	p, ok := f.pools[name]
	if !ok {
		return nil, rados.ErrNotFound
	}
	return &fakeIO{f: f, p: p}, nil
}

func (f *fakeCluster) PoolName(id int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("PoolName", fmt.Sprint(id)); err != nil {
		return "", err
	}
	for _, p := range f.pools {
		if p.id == id {
			return p.name, nil
		}
	}
	return "", rados.ErrNotFound
}

func (f *fakeCluster) ListPools() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ListPools", ""); err != nil {
		return nil, err
	}
	var out []string
	for n := range f.pools {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeCluster) InstanceID() uint64 { return f.self }

// Replace is the pool replacing the handle: the next calls are a new client's. The old
// client's live watches stay until dropRetiredWatches, as Ceph drops them only within a
// minute of its shutdown. Watch records stay: they are the OSD's, not the client's.
func (f *fakeCluster) Replace(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replaced = append(f.replaced, why)
	f.retired = append(f.retired, f.self)
	f.self += 100
}

// dropRetiredWatches is Ceph dropping the live watches of the clients Replace retired.
func (f *fakeCluster) dropRetiredWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.pools {
		for _, imgs := range []map[string]*fakeImage{p.images, p.trash} {
			for _, img := range imgs {
				var kept []fakeWatcher
				for _, w := range img.watchers {
					if !w.live || !slices.Contains(f.retired, uint64(w.w.Id)) {
						kept = append(kept, w)
					}
				}
				img.watchers = kept
			}
		}
	}
}

func (f *fakeCluster) MonCommand(buf []byte) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var m map[string]any
	json.Unmarshal(buf, &m)
	prefix, _ := m["prefix"].(string)
	if err := f.call("MonCommand", prefix); err != nil {
		return nil, "injected", err
	}
	if cephtest.IsAuthCommand(prefix) {
		return f.auth.MonCommand(buf)
	}
	switch prefix {
	case "mon stat":
		return []byte(`{}`), "", nil
	case "df":
		type st struct {
			MaxAvail int64 `json:"max_avail"`
		}
		type pl struct {
			Name  string `json:"name"`
			Stats st     `json:"stats"`
		}
		var df struct {
			Pools []pl `json:"pools"`
		}
		for _, p := range f.pools {
			df.Pools = append(df.Pools, pl{p.name, st{p.avail}})
		}
		b, _ := json.Marshal(df)
		return b, "", nil
	case "mgr dump":
		return []byte(`{"active_clients":[{"addrvec":[{"addr":"10.0.0.9:0","nonce":77}]}]}`), "", nil
	case "osd blocklist":
		f.blocklisted = append(f.blocklisted, m["addr"].(string))
		return nil, "blocklisting " + m["addr"].(string), nil
	}
	return nil, "unknown command", fakeErrno(syscall.EINVAL)
}

// MgrCommand is the rbd_support task queue: flatten and trash remove run at once unless
// holdTasks keeps them queued.
func (f *fakeCluster) MgrCommand(bufs [][]byte) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var m map[string]string
	json.Unmarshal(bufs[0], &m)
	if err := f.call("MgrCommand", m["prefix"]); err != nil {
		return nil, "injected", err
	}
	switch m["prefix"] {
	case "rbd task list":
		var ts []mgrTask
		for _, t := range f.tasks {
			ts = append(ts, t.mgrTask)
		}
		b, _ := json.Marshal(ts)
		return b, "", nil
	case "rbd task cancel":
		for i, t := range f.tasks {
			if t.ID == m["task_id"] {
				f.tasks = append(f.tasks[:i], f.tasks[i+1:]...)
				return nil, "", nil
			}
		}
		return nil, "no such task", errNoEnt
	case "rbd task add flatten", "rbd task add trash remove":
		action := strings.TrimPrefix(m["prefix"], "rbd task add ")
		spec := m["image_spec"] + m["image_id_spec"]
		for _, t := range append(append([]fakeTask(nil), f.tasks...), f.finished...) {
			if t.spec == action+" "+spec {
				b, err := json.Marshal(t.mgrTask)
				return b, "", err
			}
		}
		pool, ns, obj, ok := parseTaskSpec(spec)
		if !ok {
			return nil, "Invalid image spec", fakeErrno(syscall.EINVAL)
		}
		if f.taskTarget(action, spec) == nil {
			return nil, "image not found", errNoEnt
		}
		f.nextID++
		t := fakeTask{spec: action + " " + spec}
		t.ID = fmt.Sprint(f.nextID)
		t.Refs.Action, t.Refs.Pool, t.Refs.Namespace = action, pool, ns
		if action == taskTrashRemove {
			t.Refs.ImageID = obj
		} else {
			t.Refs.ImageName = obj
		}
		f.tasks = append(f.tasks, t)
		if !f.holdTasks {
			f.runTasksLocked()
		}
		b, err := json.Marshal(t.mgrTask)
		return b, "", err
	}
	return nil, "No handler for command", fakeErrno(syscall.EINVAL)
}

// parseTaskSpec reads an rbd_support image spec as the mgr does: pool/image for the
// pool's default namespace, pool/namespace/image otherwise; pool//image is refused.
func parseTaskSpec(spec string) (pool, ns, obj string, ok bool) {
	parts := strings.Split(spec, "/")
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], "", parts[1], true
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != "":
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

// taskTarget finds what a task works on; nil when there is nothing to do.
func (f *fakeCluster) taskTarget(action, spec string) *fakeImage {
	pool, ns, obj, ok := parseTaskSpec(spec)
	p := f.pools[pool]
	if p == nil || !ok {
		return nil
	}
	if action == taskTrashRemove {
		return p.trash[ns+"/"+obj]
	}
	img := p.images[ns+"/"+obj]
	if img == nil || img.parent == nil {
		return nil
	}
	return img
}

// runTasks runs the queued tasks as the mgr would: a purge that watchers block stays
// queued with the mgr's retry message.
func (f *fakeCluster) runTasks() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runTasksLocked()
}

func (f *fakeCluster) runTasksLocked() {
	var left []fakeTask
	for _, t := range f.tasks {
		img := f.taskTarget(t.Refs.Action, strings.TrimPrefix(t.spec, t.Refs.Action+" "))
		switch {
		case t.backingOff:
			left = append(left, t)
		case img == nil:
		case t.Refs.Action == taskFlatten:
			img.parent = nil
		case len(img.watchers) > 0:
			t.RetryMessage = "[errno 16] RBD image busy"
			left = append(left, t)
		case len(f.childrenOf(img, "")) > 0:
			t.RetryMessage = "[errno 39] image has snapshots with clones"
			left = append(left, t)
		default:
			if !img.outlivesPurge {
				delete(img.pool.trash, img.ns+"/"+img.id)
			}
			t.RetryAttempts++ // the mgr counts a successful run too
			f.finished = append(f.finished, t)
			if len(f.finished) > 50 {
				f.finished = f.finished[1:]
			}
		}
	}
	f.tasks = left
}

// childrenOf lists the clones of img@snap (of any snapshot for "").
func (f *fakeCluster) childrenOf(img *fakeImage, snap string) []librbd.ImageSpec {
	var out []librbd.ImageSpec
	for _, p := range f.pools {
		add := func(c *fakeImage, trash bool) {
			if c.parent != nil && c.parent.Image.PoolName == img.pool.name && c.parent.Image.PoolNamespace == img.ns &&
				c.parent.Image.ImageName == img.name && (snap == "" || c.parent.Snap.SnapName == snap) {
				out = append(out, librbd.ImageSpec{ImageName: c.name, ImageID: c.id, PoolName: p.name, PoolNamespace: c.ns, Trash: trash})
			}
		}
		for _, c := range p.images {
			add(c, false)
		}
		for _, c := range p.trash {
			add(c, true)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ImageName < out[j].ImageName })
	return out
}

type fakeIO struct {
	f  *fakeCluster
	p  *fakePool
	ns string
}

func (io *fakeIO) SetNamespace(ns string) { io.ns = ns }
func (io *fakeIO) ID() int64              { return io.p.id }
func (io *fakeIO) Destroy()               {}

func (io *fakeIO) lock(name, arg string) (func(), error) {
	io.f.mu.Lock()
	if err := io.f.call(name, arg); err != nil {
		io.f.mu.Unlock()
		return nil, err
	}
	return io.f.mu.Unlock, nil
}

func (io *fakeIO) NamespaceExists(ns string) (bool, error) {
	unlock, err := io.lock("NamespaceExists", ns)
	if err != nil {
		return false, err
	}
	defer unlock()
	return io.p.spaces[ns], nil
}

func (io *fakeIO) CreateNamespace(ns string) error {
	unlock, err := io.lock("CreateNamespace", ns)
	if err != nil {
		return err
	}
	defer unlock()
	if io.p.spaces[ns] {
		return errExist
	}
	io.p.spaces[ns] = true
	return nil
}

func (io *fakeIO) Namespaces() ([]string, error) {
	unlock, err := io.lock("Namespaces", io.p.name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !io.p.nsList {
		return nil, fakeErrno(syscall.EOPNOTSUPP)
	}
	var out []string
	for ns := range io.p.spaces {
		if ns != "" {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (io *fakeIO) ImageNames() ([]string, error) {
	if d := io.f.listDelay; d > 0 {
		under(d, &io.f.listing, &io.f.maxListing)
	}
	return io.names("ImageNames", io.ns, "", -1)
}

func (io *fakeIO) ImageNamesAfter(after string, max int64) ([]string, error) {
	return io.names("ImageNamesAfter", io.ns+"/"+after, after, max)
}

// names reads the image directory of io's namespace after after, at most max names (all
// for a negative max), sorted, as the call name logs it.
func (io *fakeIO) names(call, arg, after string, max int64) ([]string, error) {
	unlock, err := io.lock(call, arg)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !io.p.spaces[io.ns] {
		return nil, errNoEnt
	}
	var out []string
	for _, img := range io.p.images {
		if img.ns == io.ns && img.name > after {
			out = append(out, img.name)
		}
	}
	sort.Strings(out)
	if max >= 0 && int64(len(out)) > max {
		out = out[:max]
	}
	io.f.namesRead += len(out)
	return out, nil
}

// newImage adds an image; callers hold f.mu.
func (io *fakeIO) newImage(name string, size uint64) (*fakeImage, error) {
	if !io.p.spaces[io.ns] {
		return nil, errNoEnt
	}
	if io.p.images[io.ns+"/"+name] != nil {
		return nil, errExist
	}
	io.f.nextID++
	img := &fakeImage{id: fmt.Sprintf("%x", 0x1000+io.f.nextID), name: name, ns: io.ns, pool: io.p, size: size, meta: map[string]string{}}
	io.p.images[io.ns+"/"+name] = img
	return img, nil
}

func (io *fakeIO) CreateImage(name string, size, features uint64) error {
	unlock, err := io.lock("CreateImage", io.ns+"/"+name)
	if err != nil {
		return err
	}
	defer unlock()
	img, err := io.newImage(name, size)
	if err == nil {
		img.features = features
	}
	return err
}

// CloneImage clones as librbd does: the clone starts at the snapshot's size with a copy
// of the parent's metadata.
func (io *fakeIO) CloneImage(parent, snap string, dst ioctx, name string, features uint64) error {
	unlock, err := io.lock("CloneImage", io.ns+"/"+parent+"@"+snap)
	if err != nil {
		return err
	}
	defer unlock()
	src := io.p.images[io.ns+"/"+parent]
	if src == nil {
		return errNoEnt
	}
	s := src.snap(snap)
	if s == nil {
		return errNoEnt
	}
	if s.unprotecting {
		// librbd's clone format 1 (require-min-compat-client below mimic, as on the test
		// cluster): "parent snapshot must be protected".
		return fakeErrno(syscall.EINVAL)
	}
	d := dst.(*fakeIO)
	c, err := d.newImage(name, s.size)
	if err != nil {
		return err
	}
	for k, v := range src.meta {
		c.meta[k] = v
	}
	c.parent = &librbd.ParentInfo{Image: librbd.ImageSpec{ImageName: parent, ImageID: src.id, PoolName: io.p.name, PoolNamespace: io.ns}, Snap: librbd.SnapSpec{ID: s.id, SnapName: snap}}
	return nil
}

func (io *fakeIO) OpenImage(name string, writable bool) (image, error) {
	call := "OpenImageReadOnly"
	if writable {
		call = "OpenImage"
	}
	unlock, err := io.lock(call, io.ns+"/"+name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	img := io.p.images[io.ns+"/"+name]
	if img == nil {
		return nil, errNoEnt
	}
	h := &fakeHandle{f: io.f, img: img}
	if writable {
		// A writable open registers a watch on the header for as long as it is open.
		h.watch = uint64(len(img.watchers) + 1000)
		img.watchers = append(img.watchers, fakeWatcher{w: librbd.ImageWatcher{Id: int64(io.f.self), Cookie: h.watch, Addr: "10.0.0.1:0/self"}, live: true})
	}
	return h, nil
}

func (io *fakeIO) ImageID(name string) (string, error) {
	unlock, err := io.lock("ImageID", io.ns+"/"+name)
	if err != nil {
		return "", err
	}
	defer unlock()
	img := io.p.images[io.ns+"/"+name]
	if img == nil {
		return "", errOpNoEnt
	}
	return img.id, nil
}

func (io *fakeIO) ReadHeader(id, key string) (imageHeader, error) {
	if d := io.f.headerDelay; d > 0 {
		under(d, &io.f.reading, &io.f.maxReading)
	}
	unlock, err := io.lock("ReadHeader", io.ns+"/"+id)
	if err != nil {
		return imageHeader{}, err
	}
	defer unlock()
	img := io.byID(id)
	if img == nil {
		return imageHeader{}, errOpNoEnt
	}
	h := imageHeader{snaps: len(img.snaps), size: img.size}
	if v, ok := img.meta[key]; ok {
		h.meta = []byte(v)
	}
	return h, nil
}

func (io *fakeIO) OpenTrashed(id string) (image, error) {
	unlock, err := io.lock("OpenTrashed", io.ns+"/"+id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	img := io.p.trash[io.ns+"/"+id]
	if img == nil {
		return nil, errNoEnt
	}
	return &fakeHandle{f: io.f, img: img}, nil
}

func (io *fakeIO) TrashImage(name string) error {
	unlock, err := io.lock("TrashImage", io.ns+"/"+name)
	if err != nil {
		return err
	}
	defer unlock()
	img := io.p.images[io.ns+"/"+name]
	if img == nil {
		return errNoEnt
	}
	delete(io.p.images, io.ns+"/"+name)
	io.p.trash[io.ns+"/"+img.id] = img
	return nil
}

func (io *fakeIO) RemoveImage(name string) error {
	unlock, err := io.lock("RemoveImage", io.ns+"/"+name)
	if err != nil {
		return err
	}
	defer unlock()
	if io.p.images[io.ns+"/"+name] == nil {
		return errNoEnt
	}
	delete(io.p.images, io.ns+"/"+name)
	return nil
}

func (io *fakeIO) RemoveTrashed(id string) error {
	unlock, err := io.lock("RemoveTrashed", io.ns+"/"+id)
	if err != nil {
		return err
	}
	defer unlock()
	if io.p.trash[io.ns+"/"+id] == nil {
		return errNoEnt
	}
	delete(io.p.trash, io.ns+"/"+id)
	return nil
}

func (io *fakeIO) TrashEntries() ([]librbd.TrashInfo, error) {
	unlock, err := io.lock("TrashEntries", io.ns)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []librbd.TrashInfo
	for _, img := range io.p.trash {
		if img.ns == io.ns {
			out = append(out, librbd.TrashInfo{Id: img.id, Name: img.name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

// Exec runs the cls_rbd methods the controller uses on an image header (by ID) or on the
// rbd_trash directory.
func (io *fakeIO) Exec(oid, method string, in []byte) error {
	unlock, err := io.lock("Exec", method+" "+oid)
	if err != nil {
		return err
	}
	defer unlock()
	if oid == "rbd_trash" {
		return nil
	}
	img := io.byID(strings.TrimPrefix(oid, "rbd_header."))
	if img == nil {
		return errNoEnt
	}
	switch method {
	case "metadata_set":
		if binary.LittleEndian.Uint32(in) != 1 {
			return fakeErrno(syscall.EINVAL)
		}
		k, rest, _ := decodeString(in[4:])
		v, _, _ := decodeString(rest)
		img.meta[k] = v
	case "metadata_remove":
		k, _, _ := decodeString(in)
		if _, ok := img.meta[k]; !ok {
			return errNoEnt
		}
		delete(img.meta, k)
	default:
		return fakeErrno(syscall.EOPNOTSUPP)
	}
	return nil
}

// byID finds an image of the namespace, live or trashed, by ID; callers hold f.mu.
func (io *fakeIO) byID(id string) *fakeImage {
	for _, img := range io.p.images {
		if img.id == id && img.ns == io.ns {
			return img
		}
	}
	return io.p.trash[io.ns+"/"+id]
}

func (io *fakeIO) Notify(oid string, timeout time.Duration) ([]rados.NotifyAck, []rados.NotifyTimeout, error) {
	unlock, err := io.lock("Notify", oid)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	img := io.byID(strings.TrimPrefix(oid, "rbd_header."))
	if img == nil {
		return nil, nil, errNoEnt
	}
	var acks []rados.NotifyAck
	for _, w := range img.watchers {
		if w.live {
			acks = append(acks, rados.NotifyAck{NotifierID: rados.NotifierID(w.w.Id), WatcherID: rados.WatcherID(w.w.Cookie)})
		}
	}
	return acks, nil, nil
}

func (io *fakeIO) ReadObject(oid string) (*objectCopy, error) {
	unlock, err := io.lock("ReadObject", oid)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if io.byID(strings.TrimPrefix(oid, "rbd_header.")) == nil {
		return nil, errNoEnt
	}
	return &objectCopy{version: 1}, nil
}

// ReplaceObject rewrites a header without its watch records: the stale ones go.
func (io *fakeIO) ReplaceObject(oid string, cp *objectCopy) error {
	unlock, err := io.lock("ReplaceObject", oid)
	if err != nil {
		return err
	}
	defer unlock()
	img := io.byID(strings.TrimPrefix(oid, "rbd_header."))
	if img == nil {
		return errNoEnt
	}
	var live []fakeWatcher
	for _, w := range img.watchers {
		if w.live {
			live = append(live, w)
		}
	}
	img.watchers = live
	return nil
}

func (img *fakeImage) snap(name string) *fakeSnap {
	for _, s := range img.snaps {
		if s.name == name {
			return s
		}
	}
	return nil
}

// fakeHandle is an open image.
type fakeHandle struct {
	f     *fakeCluster
	img   *fakeImage
	watch uint64 // the writable open's own watch
}

func (h *fakeHandle) lock(name string) (func(), error) {
	h.f.mu.Lock()
	if err := h.f.call(name, h.img.ns+"/"+h.img.name); err != nil {
		h.f.mu.Unlock()
		return nil, err
	}
	return h.f.mu.Unlock, nil
}

func (h *fakeHandle) Close() error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if h.watch != 0 {
		for i, w := range h.img.watchers {
			if w.w.Cookie == h.watch && uint64(w.w.Id) == h.f.self {
				h.img.watchers = append(h.img.watchers[:i], h.img.watchers[i+1:]...)
				break
			}
		}
	}
	return nil
}

func (h *fakeHandle) Name() string { return h.img.name }

func (h *fakeHandle) ID() (string, error) {
	unlock, err := h.lock("ID")
	if err != nil {
		return "", err
	}
	defer unlock()
	return h.img.id, nil
}

func (h *fakeHandle) Size() (uint64, error) {
	unlock, err := h.lock("Size")
	if err != nil {
		return 0, err
	}
	defer unlock()
	return h.img.size, nil
}

func (h *fakeHandle) Features() (uint64, error) {
	unlock, err := h.lock("Features")
	if err != nil {
		return 0, err
	}
	defer unlock()
	return h.img.features, nil
}

func (h *fakeHandle) Resize(size uint64) error {
	unlock, err := h.lock("Resize")
	if err != nil {
		return err
	}
	defer unlock()
	h.img.size = size
	return nil
}

func (h *fakeHandle) Metadata(key string) (string, error) {
	unlock, err := h.lock("Metadata")
	if err != nil {
		return "", err
	}
	defer unlock()
	v, ok := h.img.meta[key]
	if !ok {
		return "", errNoEnt
	}
	return v, nil
}

func (h *fakeHandle) ListMetadata() (map[string]string, error) {
	unlock, err := h.lock("ListMetadata")
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := map[string]string{}
	for k, v := range h.img.meta {
		out[k] = v
	}
	return out, nil
}

func (h *fakeHandle) SetMetadata(key, value string) error {
	unlock, err := h.lock("SetMetadata")
	if err != nil {
		return err
	}
	defer unlock()
	h.img.meta[key] = value
	return nil
}

func (h *fakeHandle) RemoveMetadata(key string) error {
	unlock, err := h.lock("RemoveMetadata")
	if err != nil {
		return err
	}
	defer unlock()
	if _, ok := h.img.meta[key]; !ok {
		return errNoEnt
	}
	delete(h.img.meta, key)
	return nil
}

func (h *fakeHandle) Parent() (*librbd.ParentInfo, error) {
	unlock, err := h.lock("Parent")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if h.img.parent == nil {
		return nil, errNoEnt
	}
	p := *h.img.parent
	return &p, nil
}

func (h *fakeHandle) Snapshots() ([]librbd.SnapInfo, error) {
	unlock, err := h.lock("Snapshots")
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []librbd.SnapInfo
	for _, s := range h.img.snaps {
		out = append(out, librbd.SnapInfo{Id: s.id, Name: s.name, Size: s.size})
	}
	return out, nil
}

func (h *fakeHandle) snapByID(id uint64) *fakeSnap {
	for _, s := range h.img.snaps {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (h *fakeHandle) SnapTime(id uint64) (time.Time, error) {
	unlock, err := h.lock("SnapTime")
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	s := h.snapByID(id)
	if s == nil {
		return time.Time{}, errNoEnt
	}
	return s.at, nil
}

func (h *fakeHandle) InSnapTrash(id uint64) (bool, error) {
	unlock, err := h.lock("InSnapTrash")
	if err != nil {
		return false, err
	}
	defer unlock()
	s := h.snapByID(id)
	if s == nil {
		return false, errNoEnt
	}
	return s.trashed, nil
}

func (h *fakeHandle) CreateSnapshot(name string) error {
	unlock, err := h.lock("CreateSnapshot")
	if err != nil {
		return err
	}
	defer unlock()
	if h.img.snap(name) != nil {
		return errExist
	}
	h.img.nextSnap++
	h.img.snaps = append(h.img.snaps, &fakeSnap{id: h.img.nextSnap, name: name, size: h.img.size, at: time.Unix(1700000000+int64(h.img.nextSnap), 0).UTC()})
	return nil
}

func (h *fakeHandle) ProtectSnapshot(name string) error {
	unlock, err := h.lock("ProtectSnapshot")
	if err != nil {
		return err
	}
	defer unlock()
	s := h.img.snap(name)
	switch {
	case s == nil:
		return errNoEnt
	case s.protected, s.unprotecting:
		return errBusy // librbd: anything but unprotected
	}
	s.protected = true
	return nil
}

func (h *fakeHandle) SnapshotProtected(name string) (bool, error) {
	unlock, err := h.lock("SnapshotProtected")
	if err != nil {
		return false, err
	}
	defer unlock()
	s := h.img.snap(name)
	if s == nil {
		return false, errNoEnt
	}
	return s.protected || s.unprotecting, nil // as librbd's API reports it
}

func (h *fakeHandle) UnprotectSnapshot(name string) error {
	unlock, err := h.lock("UnprotectSnapshot")
	if err != nil {
		return err
	}
	defer unlock()
	s := h.img.snap(name)
	switch {
	case s == nil:
		return errNoEnt
	case len(h.f.childrenOf(h.img, name)) > 0:
		if s.unprotecting { // librbd sets it back to protected
			s.protected, s.unprotecting = true, false
		}
		return errBusy
	}
	s.protected, s.unprotecting = false, false
	return nil
}

func (h *fakeHandle) RemoveSnapshot(name string) error {
	unlock, err := h.lock("RemoveSnapshot")
	if err != nil {
		return err
	}
	defer unlock()
	s := h.img.snap(name)
	switch {
	case s == nil:
		return errNoEnt
	case s.protected || len(h.f.childrenOf(h.img, name)) > 0:
		return errBusy
	}
	for i := range h.img.snaps {
		if h.img.snaps[i] == s {
			h.img.snaps = append(h.img.snaps[:i], h.img.snaps[i+1:]...)
			break
		}
	}
	return nil
}

func (h *fakeHandle) Children(snap string) ([]librbd.ImageSpec, error) {
	unlock, err := h.lock("Children")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if h.img.snap(snap) == nil {
		return nil, errNoEnt
	}
	attached := h.f.childrenOf(h.img, snap)
	if h.f.midChildren != nil {
		h.f.midChildren()
	}
	// librbd answers ENOENT for an attached clone whose ID is in neither the directory
	// nor the trash any more ("error looking up name for image id").
	for _, ch := range attached {
		p := h.f.pools[ch.PoolName]
		if p.images[ch.PoolNamespace+"/"+ch.ImageName] == nil && p.trash[ch.PoolNamespace+"/"+ch.ImageID] == nil {
			return nil, errNoEnt
		}
	}
	return attached, nil
}

func (h *fakeHandle) Watchers() ([]librbd.ImageWatcher, error) {
	unlock, err := h.lock("Watchers")
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []librbd.ImageWatcher
	for _, w := range h.img.watchers {
		out = append(out, w.w)
	}
	return out, nil
}

func (h *fakeHandle) Lockers() ([]librbd.Locker, error) {
	unlock, err := h.lock("Lockers")
	if err != nil {
		return nil, err
	}
	defer unlock()
	return nil, nil
}

func (h *fakeHandle) BreakLock(client, cookie string) error {
	unlock, err := h.lock("BreakLock")
	if err != nil {
		return err
	}
	defer unlock()
	return nil
}

// watch adds a client watching an image: live, or a stale record a killed client left.
func (f *fakeCluster) watch(img *fakeImage, id int64, addr string, live bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img.watchers = append(img.watchers, fakeWatcher{w: librbd.ImageWatcher{Id: id, Cookie: uint64(id), Addr: addr}, live: live})
}

// snapshotCalls copies the calls logged so far.
func (f *fakeCluster) snapshotCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}
