package driver

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// DefaultTenant owns volumes created without PVC metadata (csi-sanity, static tooling).
const DefaultTenant = "default"

// DefaultVolumeBytes is the size of a volume requested with no capacity range.
const DefaultVolumeBytes = 1 << 30

// driverParameterKeys are accepted for every backend kind.
var driverParameterKeys = []string{
	backend.ParamBackend, backend.ParamFsType,
	backend.ParamPVCName, backend.ParamPVCNamespace, backend.ParamPVName,
}

// checkParameters rejects any StorageClass parameter the chosen backend kind does not know.
func checkParameters(params map[string]string, c backend.Controller) error {
	known := map[string]bool{}
	for _, k := range driverParameterKeys {
		known[k] = true
	}
	for _, k := range c.ParameterKeys() {
		known[k] = true
	}
	var unknown []string
	for k := range params {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		valid := append(append([]string{}, driverParameterKeys...), c.ParameterKeys()...)
		return status.Errorf(codes.InvalidArgument, "unknown StorageClass parameter(s) %s for %s backend %q; valid parameters: %s",
			strings.Join(unknown, ", "), c.Kind(), c.Name(), strings.Join(valid, ", "))
	}
	return nil
}

// tenantOf resolves the tenant of a CreateVolume: the PVC namespace, else DefaultTenant.
func tenantOf(params map[string]string) (string, error) {
	t := params[backend.ParamPVCNamespace]
	if t == "" {
		return DefaultTenant, nil
	}
	if err := volid.ValidTenant(t); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "PVC namespace %q cannot name a tenant: %v", t, err)
	}
	return t, nil
}

// accessSummary is what a set of capabilities asks of a backend.
type accessSummary struct {
	block, mount, multiNode, multiWriter bool
	fsType                               string
}

func summarize(caps []*csi.VolumeCapability) (accessSummary, error) {
	var s accessSummary
	if len(caps) == 0 {
		return s, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	for _, c := range caps {
		if c == nil {
			return s, status.Error(codes.InvalidArgument, "volume capability is nil")
		}
		switch at := c.GetAccessType().(type) {
		case *csi.VolumeCapability_Block:
			s.block = true
		case *csi.VolumeCapability_Mount:
			s.mount = true
			if fs := at.Mount.GetFsType(); fs != "" {
				s.fsType = fs
			}
		default:
			return s, status.Error(codes.InvalidArgument, "volume capability needs an access type (block or mount)")
		}
		if c.GetAccessMode() == nil {
			return s, status.Error(codes.InvalidArgument, "volume capability needs an access mode")
		}
		switch c.GetAccessMode().GetMode() {
		case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
			s.multiNode = true
		case csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
			csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
			s.multiNode, s.multiWriter = true, true
		default:
			return s, status.Errorf(codes.InvalidArgument, "access mode %v is not supported", c.GetAccessMode().GetMode())
		}
	}
	if s.block && s.mount {
		return s, status.Error(codes.InvalidArgument, "a volume cannot be requested as both block and mount")
	}
	return s, nil
}

// kinds are the capabilities of every backend kind the driver serves, by kind name.
type kinds map[string]backend.Capabilities

// supports reports whether a backend kind can serve the requested access; the error says why not.
func (k kinds) supports(kind string, s accessSummary) error {
	c, ok := k[kind]
	if !ok {
		return fmt.Errorf("unknown backend kind %q", kind)
	}
	switch {
	case s.block && !c.Block:
		return fmt.Errorf("%s volumes are %s; the block access type needs %s", kind, filesystems(c), k.offering(func(o backend.Capabilities) bool { return o.Block }))
	case s.mount && s.multiNode && s.multiWriter && !c.SharedFilesystem:
		return fmt.Errorf("%s filesystem volumes are single-node; multi-node writers need %s", kind, k.multiWriterAdvice(c))
	case s.mount && c.FsTypes != nil && !slices.Contains(c.FsTypes, s.fsType) && s.fsType != "":
		return fmt.Errorf("fsType %q is not supported on %s; use %s", s.fsType, kind, strings.Join(c.FsTypes, " or "))
	}
	return nil
}

func filesystems(c backend.Capabilities) string {
	if c.SharedFilesystem {
		return "shared filesystems"
	}
	return "filesystems"
}

// multiWriterAdvice says what serves multi-node writers when a kind's filesystems do not.
func (k kinds) multiWriterAdvice(c backend.Capabilities) string {
	shared := k.offering(func(o backend.Capabilities) bool { return o.SharedFilesystem })
	if c.Block {
		return "the block access type or " + shared
	}
	return shared
}

// offering names the kinds that serve what serves says, for an error's advice.
func (k kinds) offering(serves func(backend.Capabilities) bool) string {
	var names []string
	for name, c := range k {
		if serves(c) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "a backend kind this driver does not have"
	}
	sort.Strings(names)
	return article(names[0]) + " " + strings.Join(names, "/") + " backend"
}

// article is "an" before a kind name said with a vowel first: a word starting with a vowel
// ("isilon"), or an abbreviation spelt out whose first letter's name does ("rbd": "ar").
func article(name string) string {
	first := name[:1]
	spelt := !strings.ContainsAny(name, "aeiouy")
	if strings.Contains("aeiou", first) || (spelt && strings.Contains("fhlmnrsx", first)) {
		return "an"
	}
	return "a"
}

func capacityRange(r *csi.CapacityRange) (required, limit int64, err error) {
	required, limit = r.GetRequiredBytes(), r.GetLimitBytes()
	if required < 0 || limit < 0 {
		return 0, 0, status.Error(codes.InvalidArgument, "capacity range bytes must not be negative")
	}
	if limit > 0 && required > limit {
		return 0, 0, status.Errorf(codes.InvalidArgument, "required_bytes %d exceeds limit_bytes %d", required, limit)
	}
	if required == 0 {
		required = DefaultVolumeBytes
		if limit > 0 && limit < required {
			required = limit
		}
	}
	return required, limit, nil
}

// parseVolumeID decodes a volume ID; a malformed one cannot name an existing volume, so it
// is NOT_FOUND wherever the spec asks for an existing volume.
func parseVolumeID(id string) (volid.Volume, error) {
	if id == "" {
		return volid.Volume{}, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	v, err := volid.ParseVolume(id)
	if err != nil {
		return v, status.Errorf(codes.NotFound, "volume %q does not exist: not a shiphold volume ID (%v)", id, err)
	}
	return v, nil
}

func parseNodeID(id string) (backend.Node, error) {
	if id == "" {
		return backend.Node{}, status.Error(codes.InvalidArgument, "node ID is required")
	}
	name, addr, ok := strings.Cut(id, "@")
	if !ok || name == "" || addr == "" {
		return backend.Node{}, status.Errorf(codes.NotFound, "node %q is not a shiphold node: node IDs are name@address as NodeGetInfo reports", id)
	}
	return backend.Node{Name: name, Address: addr}, nil
}
