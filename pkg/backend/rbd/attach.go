package rbd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/mounter"
)

// imageSpec names an image for the node.
type imageSpec struct {
	Pool      string `json:"pool"`
	Namespace string `json:"namespace"`
	Image     string `json:"image"`
}

func (s imageSpec) String() string { return s.Pool + "/" + s.Namespace + "/" + s.Image }

// attachment is what an attach strategy left on the node; it is stored in the attach record.
type attachment struct {
	Device    string `json:"device,omitempty"`
	FuseMount string `json:"fuseMount,omitempty"`
	// FusePID and FuseStart name the rbd-fuse daemon for an admin; teardown finds the daemon
	// by the mount it serves and never signals a PID read from a record.
	FusePID   int    `json:"fusePid,omitempty"`
	FuseStart uint64 `json:"fuseStart,omitempty"`
}

// attachOptions say how a stage may use the image.
type attachOptions struct {
	// ReadOnly maps the image read-only (reader-only modes, read-only publishes).
	ReadOnly bool
	// Exclusive holds the image's exclusive lock while mapped, so that a second writer
	// (another node after a forced detach) cannot map it (single-writer modes).
	Exclusive bool
}

// attacher makes an image a local block device and takes it away again. What maps an
// image is always asked of the kernel: device names (/dev/rbdN, nbdN, loopN) are reused, so
// a name in a record says nothing about what it maps now.
type attacher interface {
	// Attach maps img; dir is the staging directory, for strategies that need a place.
	Attach(ctx context.Context, img imageSpec, dir string, cred ceph.Credentials, opts attachOptions) (attachment, error)
	// Mappings lists what maps img on this node now (a crashed map leaves mappings no record
	// names), in the order Detach must take them.
	Mappings(ctx context.Context, img imageSpec, dir string) ([]attachment, error)
	// Verify reports nil when at's device maps img now.
	Verify(ctx context.Context, img imageSpec, dir string, at attachment) error
	// Detach undoes one attachment that Attach or Mappings returned; what is gone is fine.
	Detach(ctx context.Context, at attachment) error
	// Refresh makes the device show the image's current size, at least want bytes.
	Refresh(ctx context.Context, at attachment, want int64) error
}

// mapping is one image mapped on the node, as the kernel or rbd-nbd reports it.
type mapping struct {
	Device string
	Image  imageSpec
	// Snap is "-" (or empty) for the image itself.
	Snap string
}

func (m mapping) is(img imageSpec) bool {
	return m.Image == img && (m.Snap == "" || m.Snap == "-")
}

// cliAttacher covers krbd (`rbd map`) and rbd-nbd (`rbd-nbd map`): both print the device.
type cliAttacher struct {
	cluster ceph.Cluster
	m       *mounter.Mounter
	tool    string // "rbd" or "rbd-nbd"
	// mapped lists every image mapped by this tool on the node.
	mapped func(ctx context.Context) ([]mapping, error)
}

func newKRBDAttacher(cl ceph.Cluster, m *mounter.Mounter, sysRoot string) *cliAttacher {
	return &cliAttacher{cluster: cl, m: m, tool: "rbd", mapped: func(context.Context) ([]mapping, error) { return krbdMapped(sysRoot) }}
}

func newNBDAttacher(cl ceph.Cluster, m *mounter.Mounter) *cliAttacher {
	return &cliAttacher{cluster: cl, m: m, tool: "rbd-nbd", mapped: func(ctx context.Context) ([]mapping, error) { return nbdMapped(ctx, m) }}
}

func (a *cliAttacher) Attach(ctx context.Context, img imageSpec, dir string, cred ceph.Credentials, opts attachOptions) (attachment, error) {
	keyFile, cleanup, err := ceph.WriteKeyFile(dir, cred)
	if err != nil {
		return attachment{}, err
	}
	defer cleanup()
	args := []string{"map", img.String()}
	if opts.ReadOnly {
		args = append(args, "--read-only")
	}
	if opts.Exclusive {
		if a.tool == "rbd" {
			args = append(args, "-o", "exclusive")
		} else {
			args = append(args, "--exclusive")
		}
	}
	args = append(args, ceph.ConfArgs(a.cluster, cred.UserID, keyFile)...)
	out, err := a.m.RunDaemon(ctx, a.tool, args...) // rbd-nbd map leaves its daemon; krbd none
	if err != nil {
		return attachment{}, fmt.Errorf("map image %s with %s: %w", img, a.tool, err)
	}
	dev := lastLine(out)
	if !strings.HasPrefix(dev, "/dev/") {
		return attachment{}, fmt.Errorf("%s map printed %q, not a device", a.tool, dev)
	}
	return attachment{Device: dev}, nil
}

func (a *cliAttacher) Mappings(ctx context.Context, img imageSpec, _ string) ([]attachment, error) {
	all, err := a.mapped(ctx)
	if err != nil {
		return nil, err
	}
	var out []attachment
	for _, m := range all {
		if m.is(img) {
			out = append(out, attachment{Device: m.Device})
		}
	}
	return out, nil
}

func (a *cliAttacher) Verify(ctx context.Context, img imageSpec, dir string, at attachment) error {
	if at.Device == "" {
		return fmt.Errorf("no device recorded")
	}
	all, err := a.mapped(ctx)
	if err != nil {
		return err
	}
	for _, m := range all {
		if filepath.Base(m.Device) != filepath.Base(at.Device) {
			continue
		}
		if !m.is(img) {
			return fmt.Errorf("%s maps %s@%s now, not %s", at.Device, m.Image, m.Snap, img)
		}
		return nil
	}
	return fmt.Errorf("%s maps nothing now", at.Device)
}

func (a *cliAttacher) Detach(ctx context.Context, at attachment) error {
	if at.Device == "" {
		return nil
	}
	out, err := a.m.Run(ctx, a.tool, "unmap", at.Device)
	if err != nil && !strings.Contains(string(out), "not mapped") && !strings.Contains(string(out), "No such") {
		return fmt.Errorf("unmap %s: %w", at.Device, err)
	}
	return nil
}

// Refresh is a no-op: krbd and rbd-nbd follow the image's header and resize the device.
func (a *cliAttacher) Refresh(ctx context.Context, at attachment, want int64) error { return nil }

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// krbdMapped reads the krbd devices from sysfs: /sys/bus/rbd/devices/N/{pool,pool_ns,name,
// current_snap} describe /dev/rbdN.
func krbdMapped(sysRoot string) ([]mapping, error) {
	dir := filepath.Join(sysRoot, "bus/rbd/devices")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list krbd devices: %w", err)
	}
	var out []mapping
	for _, e := range entries {
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name(), name))
			return strings.TrimSpace(string(b))
		}
		m := mapping{Device: "/dev/rbd" + e.Name(), Snap: read("current_snap"),
			Image: imageSpec{Pool: read("pool"), Namespace: read("pool_ns"), Image: read("name")}}
		if m.Image.Pool == "" || m.Image.Image == "" {
			continue // being added or removed
		}
		out = append(out, m)
	}
	return out, nil
}

// nbdMapped asks rbd-nbd which images its daemons serve.
func nbdMapped(ctx context.Context, m *mounter.Mounter) ([]mapping, error) {
	out, err := m.Run(ctx, "rbd-nbd", "list-mapped", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("list rbd-nbd devices: %w", err)
	}
	var list []struct {
		Pool      string `json:"pool"`
		Namespace string `json:"namespace"`
		Image     string `json:"image"`
		Snap      string `json:"snap"`
		Device    string `json:"device"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("rbd-nbd list-mapped printed %q: %w", out, err)
	}
	maps := make([]mapping, 0, len(list))
	for _, e := range list {
		maps = append(maps, mapping{Device: e.Device, Snap: e.Snap, Image: imageSpec{Pool: e.Pool, Namespace: e.Namespace, Image: e.Image}})
	}
	return maps, nil
}
