package onefssim

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/migrate/nfs3"
	"github.com/shiphold/shiphold/test/prereq"
)

// Ports for the test's ganesha, distinct from the hack/nfs-server.sh defaults
// (12049/12048) so a developer's running server is not disturbed.
const (
	tNFSPort = "12149"
	tMNTPort = "12148"
)

func nfsScript(t *testing.T, env []string, args ...string) {
	t.Helper()
	script, _ := filepath.Abs("../../hack/nfs-server.sh")
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), append([]string{"NFS_PORT=" + tNFSPort, "MNT_PORT=" + tMNTPort}, env...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nfs-server.sh %v: %v\n%s", args, err, out)
	}
}

func nfsURL(host, p string) string {
	return fmt.Sprintf("nfs://%s%s?nfsport=%s&mountport=%s&version=3", host, p, tNFSPort, tMNTPort)
}

// nfsCp runs nfs-cp (optionally inside a network namespace).
func nfsCp(netns, src, dst string) (string, error) {
	args := []string{src, dst}
	name := "nfs-cp"
	if netns != "" {
		name, args = "ip", append([]string{"netns", "exec", netns, "nfs-cp"}, args...)
	}
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually retries f until it succeeds or the deadline passes (ganesha
// applies a SIGHUP reload asynchronously).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGaneshaExportsNFSv3 needs nfs-ganesha (ganesha.nfsd), rpcbind,
// libnfs-utils (nfs-cp) and root (ganesha, network namespaces). It shows that
// OneFS exports created through goisilon become real NFSv3 exports:
// a listed client writes through NFS into the real directory, an unlisted
// client (a veth address in a private network namespace) is refused until it
// is added to the export's clients, and a deleted export disappears.
func TestGaneshaExportsNFSv3(t *testing.T) {
	prereq.RequireCommand(t, "nfs-cp", "apt-get install libnfs-utils, or hack/install-deps.sh")
	s, url, nfsDir := simOverGanesha(t)
	c := mustClient(t, url, authSession)
	ctx := ctxT(t)
	if _, err := c.CreateVolumeWithIsipath(ctx, "/ifs/data/csi", "nfsvol", "0777"); err != nil {
		t.Fatal(err)
	}
	id, err := c.ExportWithZoneAndPath(ctx, "/ifs/data/csi/nfsvol", "System", "nfs test")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddExportClientsByIDWithZone(ctx, id, "System", []string{"127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	conf, _ := os.ReadFile(filepath.Join(nfsDir, "exports.conf"))
	if !bytes.Contains(conf, []byte(`Pseudo = "/ifs/data/csi/nfsvol"`)) || !bytes.Contains(conf, []byte("Clients = 127.0.0.1;")) {
		t.Fatalf("rendered exports:\n%s", conf)
	}

	// 200 KiB: NFSv3 handles writes above 64 KiB (v4 with libnfs did not here).
	payload := make([]byte, 200<<10)
	_, _ = rand.Read(payload)
	src := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(src, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(s.Root(), "data/csi/nfsvol/payload.bin")
	eventually(t, "nfs-cp as 127.0.0.1", func() error {
		out, err := nfsCp("", src, nfsURL("127.0.0.1", "/ifs/data/csi/nfsvol/payload.bin"))
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	got, err := os.ReadFile(real)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("real file after NFS write: %d bytes, err %v", len(got), err)
	}

	// An unlisted client must be refused. libnfs cannot pick a source address,
	// and every loopback connection comes from 127.0.0.1, so the second client
	// lives in a private network namespace joined to this host by a veth pair
	// (traffic never leaves the machine); ganesha is restarted bound to the
	// host end of the veth, which is the only address both sides can reach.
	n := os.Getpid() % 200
	ns := fmt.Sprintf("osim%d", os.Getpid())
	hostIf, nsIf := fmt.Sprintf("osh%d", os.Getpid()), fmt.Sprintf("osn%d", os.Getpid())
	hostIP, nsIP := fmt.Sprintf("10.250.%d.1", n), fmt.Sprintf("10.250.%d.2", n)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("link", "set", nsIf, "netns", ns)
	run("addr", "add", hostIP+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("netns", "exec", ns, "ip", "addr", "add", nsIP+"/30", "dev", nsIf)
	run("netns", "exec", ns, "ip", "link", "set", nsIf, "up")
	run("netns", "exec", ns, "ip", "link", "set", "lo", "up")

	nfsScript(t, nil, "stop", nfsDir)
	// From the host, connections to hostIP come from hostIP.
	if err := c.SetExportClientsByIDWithZone(ctx, id, "System", false, hostIP); err != nil {
		t.Fatal(err)
	}
	nfsScript(t, []string{"NFS_BIND_ADDR=" + hostIP}, "start", nfsDir)

	eventually(t, "nfs-cp as listed host client "+hostIP, func() error {
		out, err := nfsCp("", src, nfsURL(hostIP, "/ifs/data/csi/nfsvol/host.bin"))
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	out, err := nfsCp(ns, src, nfsURL(hostIP, "/ifs/data/csi/nfsvol/ns.bin"))
	if err == nil || !strings.Contains(out, "MNT3ERR_ACCES") {
		t.Fatalf("unlisted client %s was not refused: err=%v out=%s", nsIP, err, out)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "data/csi/nfsvol/ns.bin")); !os.IsNotExist(err) {
		t.Fatalf("refused client created a file: %v", err)
	}
	// Adding the client through the API reloads ganesha and lets it in.
	if err := c.AddExportClientsByIDWithZone(ctx, id, "System", []string{nsIP}, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "nfs-cp as newly listed client "+nsIP, func() error {
		out, err := nfsCp(ns, src, nfsURL(hostIP, "/ifs/data/csi/nfsvol/ns.bin"))
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if got, err := os.ReadFile(filepath.Join(s.Root(), "data/csi/nfsvol/ns.bin")); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("ns.bin: %d bytes, %v", len(got), err)
	}
	// Deleting the export removes it from ganesha.
	if err := c.UnexportByIDWithZone(ctx, id, "System"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "export removed", func() error {
		out, err := nfsCp("", src, nfsURL(hostIP, "/ifs/data/csi/nfsvol/after.bin"))
		if err == nil {
			return fmt.Errorf("write still allowed after unexport: %s", out)
		}
		return nil
	})
}

// TestSnapshotExportKeepsItsIDWhenAnotherSnapshotCollides: a client's NFSv3 file handles
// carry the export id; if a new snapshot whose id hashes onto an existing snapshot export's
// took that id at the next reload, the existing export would move to another id under a
// running migration's feet (CI: a resumed migration's read of its snapshot failed while
// parallel runs added and removed theirs).
func TestSnapshotExportKeepsItsIDWhenAnotherSnapshotCollides(t *testing.T) {
	root := t.TempDir()
	exports := []Export{{ID: 7, Paths: []string{"/ifs/data/site"}}}
	snap := func(name string) {
		if err := os.MkdirAll(filepath.Join(root, "data/site"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, snapDir, name, "data/site"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	slot := func(name string) uint32 {
		h := fnv.New32a()
		h.Write([]byte("/ifs/data/site/" + snapDir + "/" + name))
		return h.Sum32() % 500
	}
	// a later snapshot that lists before the first one and hashes onto the same id
	first, later := "zz-run1", ""
	for i := 0; later == ""; i++ {
		if n := fmt.Sprintf("aa-run%d", i); slot(n) == slot(first) {
			later = n
		}
	}
	g := &GaneshaOptions{ExportsFile: filepath.Join(t.TempDir(), "exports.conf")}
	idOf := func(name string) string {
		if err := g.apply(root, exports); err != nil {
			t.Fatal(err)
		}
		conf, err := os.ReadFile(g.ExportsFile)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?s)# snapshot ` + regexp.QuoteMeta(name) + ` of OneFS export 7 .*?Export_Id = (\d+);`).FindSubmatch(conf)
		if m == nil {
			t.Fatalf("no export for snapshot %s in\n%s", name, conf)
		}
		return string(m[1])
	}
	snap(first)
	before := idOf(first)
	snap(later)
	if after := idOf(first); after != before {
		t.Fatalf("snapshot %s's export moved from id %s to %s when snapshot %s (same hash) appeared", first, before, after, later)
	}
	if idOf(later) == before {
		t.Fatalf("two snapshot exports share id %s", before)
	}
}

// TestSnapshotTakenAgainUnderItsNameIsServedAnew: a resumed migration drops the snapshot its
// killed run left and takes it again under the same name at once; the export must then serve
// the new snapshot, not the removed one's cached root.
func TestSnapshotTakenAgainUnderItsNameIsServedAnew(t *testing.T) {
	s, url := exportedSiteOverGanesha(t)
	snapshotTakenTwice(t, s, url)
}

// TestSnapshotReadsSurviveOtherSnapshotsComingAndGoing: a migration reads a snapshot over
// NFSv3 while other runs take and drop theirs, each a ganesha reload; its reads must not
// fail (CI: "read …: bad address", libnfs's word for an RPC-level failure).
func TestSnapshotReadsSurviveOtherSnapshotsComingAndGoing(t *testing.T) {
	s, url := exportedSiteOverGanesha(t)
	site := filepath.Join(s.Root(), "data/csi/site")
	const files = 200
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for i := range files {
		if err := os.WriteFile(filepath.Join(site, fmt.Sprintf("f%03d", i)), payload, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func(name string) {
		if code, _, body := rawDo(t, "POST", url+"/platform/1/snapshot/snapshots", nil, `{"name":"`+name+`","path":"/ifs/data/csi/site"}`); code != 201 {
			t.Fatalf("snapshot %s: %d %s", name, code, body)
		}
	}
	snapshot("mine")
	var fs *nfs3.FS
	eventually(t, "mount the snapshot", func() (err error) {
		fs, err = nfs3.Open(nfs3.Config{Server: "127.0.0.1", Export: "/ifs/data/csi/site/.snapshot/mine",
			NFSPort: port(tNFSPort), MountPort: port(tMNTPort), Connections: 4, ReadOnly: true})
		return err
	})
	defer fs.Close()

	// other runs' snapshots come and go; every other one lists before this one and hashes
	// onto its export id
	others := collidingNames("/ifs/data/csi/site/"+snapDir+"/", "mine", 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 15 {
			name := fmt.Sprintf("other-%d", i)
			if i%2 == 0 {
				name = others[i/2]
			}
			snapshot(name)
			time.Sleep(100 * time.Millisecond)
			if code, _, body := rawDo(t, "DELETE", url+"/platform/1/snapshot/snapshots/"+name, nil, ""); code != 204 {
				t.Errorf("delete snapshot %s: %d %s", name, code, body)
			}
		}
	}()
	var failures []string
	buf := make([]byte, len(payload))
	for pass := 0; ; pass++ {
		select {
		case <-done:
			if len(failures) > 0 {
				t.Fatalf("%d reads of the snapshot failed while others came and went, e.g. %s", len(failures), failures[0])
			}
			t.Logf("%d passes over %d files read while 15 other snapshots came and went", pass, files)
			return
		default:
		}
		for i := range files {
			if err := readWhole(fs, fmt.Sprintf("f%03d", i), buf); err != nil {
				failures = append(failures, err.Error())
			} else if !bytes.Equal(buf, payload) {
				failures = append(failures, fmt.Sprintf("f%03d: other bytes", i))
			}
		}
	}
}

// simOverGanesha starts ganesha (its config directory is returned) and a simulator whose
// exports it serves.
func simOverGanesha(t *testing.T) (*Server, string, string) {
	t.Helper()
	return simOverGaneshaWith(t, nil)
}

// simOverGaneshaWith is simOverGanesha with the ganesha options adjusted first.
func simOverGaneshaWith(t *testing.T, adjust func(g *GaneshaOptions, nfsDir string)) (*Server, string, string) {
	t.Helper()
	prereq.RequireRoot(t, "ganesha and network namespaces")
	prereq.RequireCommand(t, "ganesha.nfsd", "apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind, or hack/install-deps.sh")
	nfsDir := t.TempDir()
	nfsScript(t, nil, "start", nfsDir)
	t.Cleanup(func() { nfsScript(t, nil, "stop", nfsDir) })
	s, url := newSim(t, func(o *Options) {
		o.Ganesha = &GaneshaOptions{ExportsFile: filepath.Join(nfsDir, "exports.conf"), PidFile: filepath.Join(nfsDir, "ganesha.pid")}
		if adjust != nil {
			adjust(o.Ganesha, nfsDir)
		}
	})
	if err := os.Chmod(s.Root(), 0o755); err != nil { // ganesha's VFS FSAL walks the path
		t.Fatal(err)
	}
	return s, url, nfsDir
}

// exportedSiteOverGanesha starts ganesha and a simulator that drives it, with
// /ifs/data/csi/site exported to everyone.
func exportedSiteOverGanesha(t *testing.T) (*Server, string) {
	t.Helper()
	return exportedSiteOverGaneshaWith(t, nil)
}

// exportedSiteOverGaneshaWith is exportedSiteOverGanesha with the ganesha options adjusted.
func exportedSiteOverGaneshaWith(t *testing.T, adjust func(g *GaneshaOptions, nfsDir string)) (*Server, string) {
	t.Helper()
	s, url, _ := simOverGaneshaWith(t, adjust)
	if err := os.MkdirAll(filepath.Join(s.Root(), "data/csi/site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := mustClient(t, url, authSession).ExportWithZoneAndPath(ctxT(t), "/ifs/data/csi/site", "System", "site"); err != nil {
		t.Fatal(err)
	}
	return s, url
}

func port(p string) int { n, _ := strconv.Atoi(p); return n }

// collidingNames finds n snapshot names that list before name and whose export ids hash
// onto its own.
func collidingNames(prefix, name string, n int) []string {
	slot := func(s string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(prefix + s))
		return h.Sum32() % 500
	}
	var out []string
	for i := 0; len(out) < n; i++ {
		if c := fmt.Sprintf("a%d", i); slot(c) == slot(name) {
			out = append(out, c)
		}
	}
	return out
}

func readWhole(fs *nfs3.FS, p string, buf []byte) error {
	r, err := fs.Open(p)
	if err != nil {
		return err
	}
	defer r.Close()
	for off := 0; off < len(buf); {
		n, err := r.ReadAt(buf[off:], int64(off))
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

// TestSnapshotTakenAgainInOneReload: ganesha takes its SIGHUPs in turn, and two that come
// while it is busy are one reload, which reads only the last exports file. A snapshot
// dropped and taken again under its name in that time must still be served anew (CI:
// "round 2: read the snapshot: open index.html: no such file or directory": ganesha found
// the export unchanged in id, path and pseudo path, and kept serving the removed
// directory). Each signal here reaches ganesha 300 ms late, as when it is busy.
func TestSnapshotTakenAgainInOneReload(t *testing.T) {
	s, url := exportedSiteOverGaneshaWith(t, func(g *GaneshaOptions, nfsDir string) {
		g.LogFile = filepath.Join(nfsDir, "ganesha.log")
		g.Reload = func() error {
			b, err := os.ReadFile(g.PidFile)
			if err != nil {
				return err
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return err
			}
			time.AfterFunc(300*time.Millisecond, func() { _ = syscall.Kill(pid, syscall.SIGHUP) })
			return nil
		}
	})
	snapshotTakenTwice(t, s, url)
}

// snapshotTakenTwice writes the site, snapshots it as "run" and reads the snapshot over
// NFSv3; then writes it anew, drops the snapshot, takes it again under its name at once,
// and must read the new content.
func snapshotTakenTwice(t *testing.T, s *Server, url string) {
	t.Helper()
	live := filepath.Join(s.Root(), "data/csi/site/index.html")
	for round, content := range []string{"first run", "second run, after the kill"} {
		if err := os.WriteFile(live, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if round > 0 {
			if code, _, body := rawDo(t, "DELETE", url+"/platform/1/snapshot/snapshots/run", nil, ""); code != 204 {
				t.Fatalf("delete snapshot: %d %s", code, body)
			}
		}
		if code, _, body := rawDo(t, "POST", url+"/platform/1/snapshot/snapshots", nil, `{"name":"run","path":"/ifs/data/csi/site"}`); code != 201 {
			t.Fatalf("snapshot: %d %s", code, body)
		}
		buf := make([]byte, len(content))
		eventually(t, fmt.Sprintf("round %d: read the snapshot", round+1), func() error {
			fs, err := nfs3.Open(nfs3.Config{Server: "127.0.0.1", Export: "/ifs/data/csi/site/.snapshot/run",
				NFSPort: port(tNFSPort), MountPort: port(tMNTPort), Connections: 1, ReadOnly: true})
			if err != nil {
				return err
			}
			defer fs.Close()
			if err := readWhole(fs, "index.html", buf); err != nil {
				return err
			}
			if string(buf) != content {
				return fmt.Errorf("read %q, want %q", buf, content)
			}
			return nil
		})
	}
}
