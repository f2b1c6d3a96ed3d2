// Package cephfs is the CephFS backend: a subvolume group per tenant and a subvolume per
// volume through the mgr volumes module (controller), and ceph-fuse or kernel CephFS mounts
// of the subvolume on the node.
package cephfs

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// StorageClass parameters of the cephfs kind.
const (
	ParamFSName             = "fsName"
	ParamMounter            = "mounter"
	ParamKernelMountOptions = "kernelMountOptions"
	ParamFuseMountOptions   = "fuseMountOptions"
)

// Volume context keys handed to the node.
const (
	CtxFSName             = "fsName"
	CtxSubvolumeGroup     = "subvolumeGroup"
	CtxSubvolumeName      = "subvolumeName"
	CtxRootPath           = "rootPath"
	CtxMounter            = "mounter"
	CtxKernelMountOptions = "kernelMountOptions"
	CtxFuseMountOptions   = "fuseMountOptions"
	CtxClusterID          = "clusterID"
)

// Node mount strategies.
const (
	MounterKernel = "kernel"
	MounterFuse   = "fuse"
	MounterAuto   = "auto"
)

// DefaultSubvolumeGroupPrefix is put before the tenant when the config sets no prefix.
const DefaultSubvolumeGroupPrefix = "shiphold-"

// Object name prefixes; the rest is the volid hash of the CSI request name.
const (
	subvolumePrefix = "csi-vol-"
	snapshotPrefix  = "csi-snap-"
	// cloneSnapPrefix names the temporary snapshot a volume-to-volume clone copies from.
	cloneSnapPrefix = "csi-clone-"
)

// recordKey is the subvolume metadata key holding the request a volume was created for.
const recordKey = "shiphold.request"

var parameterKeys = []string{ParamFSName, ParamMounter, ParamKernelMountOptions, ParamFuseMountOptions}

var (
	fsNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	// A mount option is a flag or key=value without separators or shell/space characters.
	mountOptRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+(=[A-Za-z0-9_.:/@+-]*)?$`)
	fuseOptRe  = regexp.MustCompile(`^[a-z][a-z0-9_]*=[A-Za-z0-9_.:/@+-]*$`)
)

// fuseOptsReserved are ceph-fuse options the stager sets itself; a class may not override them.
var fuseOptsReserved = map[string]bool{
	"id": true, "name": true, "keyfile": true, "keyring": true, "key": true, "mon_host": true,
	"client_mountpoint": true, "client_fs": true, "client_mds_namespace": true, "conf": true,
	"admin_socket": true,
}

// kernelOptsReserved carry credentials or the filesystem, which come from the backend.
var kernelOptsReserved = map[string]bool{"name": true, "secret": true, "secretfile": true, "mds_namespace": true, "fs": true}

// volumeParams are the validated class parameters of one volume.
type volumeParams struct {
	FSName             string `json:"fsName"`
	Mounter            string `json:"mounter,omitempty"`
	KernelMountOptions string `json:"kernelMountOptions,omitempty"`
	FuseMountOptions   string `json:"fuseMountOptions,omitempty"`
}

// parseParams validates the class parameters against the backend defaults.
func parseParams(params map[string]string, cfg *Config) (volumeParams, error) {
	p := volumeParams{
		FSName:             cfg.FSName,
		Mounter:            cfg.Mounter,
		KernelMountOptions: params[ParamKernelMountOptions],
		FuseMountOptions:   params[ParamFuseMountOptions],
	}
	if v, ok := params[ParamFSName]; ok {
		p.FSName = v
	}
	if v, ok := params[ParamMounter]; ok {
		p.Mounter = v
	}
	if p.Mounter == "" {
		p.Mounter = MounterAuto
	}
	if !fsNameRe.MatchString(p.FSName) {
		return p, backend.Errorf(backend.InvalidArgument, "StorageClass parameter %q: %q is not a CephFS filesystem name", ParamFSName, p.FSName)
	}
	if err := validMounter(p.Mounter); err != nil {
		return p, err
	}
	if err := validOptions(ParamKernelMountOptions, p.KernelMountOptions, mountOptRe, kernelOptsReserved); err != nil {
		return p, err
	}
	if err := validOptions(ParamFuseMountOptions, p.FuseMountOptions, fuseOptRe, fuseOptsReserved); err != nil {
		return p, err
	}
	return p, nil
}

func validMounter(m string) error {
	switch m {
	case MounterKernel, MounterFuse, MounterAuto:
		return nil
	}
	return backend.Errorf(backend.InvalidArgument, "StorageClass parameter %q: %q must be kernel, fuse or auto", ParamMounter, m)
}

// validOptions checks a comma-separated option list; reserved options are set by shiphold.
func validOptions(param, list string, re *regexp.Regexp, reserved map[string]bool) error {
	if list == "" {
		return nil
	}
	for _, o := range strings.Split(list, ",") {
		if !re.MatchString(o) {
			want := "flag or key=value"
			if param == ParamFuseMountOptions {
				want = "ceph client option as key=value, e.g. client_cache_size=1000"
			}
			return backend.Errorf(backend.InvalidArgument, "StorageClass parameter %q: option %q is not a %s (comma-separated, no spaces)", param, o, want)
		}
		key, _, _ := strings.Cut(o, "=")
		if reserved[key] {
			return backend.Errorf(backend.InvalidArgument, "StorageClass parameter %q: option %q is set by shiphold from the backend config and the volume; remove it", param, key)
		}
	}
	return nil
}

// volumeRecord is what a subvolume's metadata says about the request that made it. Name,
// Bytes and Source stay written beside Request so that an older driver still reads it.
type volumeRecord struct {
	Name   string       `json:"name"`
	Bytes  int64        `json:"bytes"`
	Params volumeParams `json:"params"`
	// Source is the snapshot or volume ID the volume was cloned from.
	Source string `json:"source,omitempty"`
	// Request is the shared request record; volumes of older versions have none.
	Request *backend.RequestRecord `json:"request,omitempty"`
	// Backend names the backend that adopted a subvolume outside its own groups: only
	// that one lists it (several backends may share a cluster).
	Backend string `json:"backend,omitempty"`
}

// request is the record the shared conflict rule judges; an older volume's lacks the
// parameters as asked, so they are not compared.
func (r volumeRecord) request() backend.RequestRecord {
	if r.Request != nil {
		return *r.Request
	}
	return backend.RequestRecord{Name: r.Name, RequiredBytes: r.Bytes, Source: r.Source}
}

func (r volumeRecord) encode() string {
	b, _ := json.Marshal(r)
	return string(b)
}

func decodeRecord(s string) (volumeRecord, error) {
	var r volumeRecord
	err := json.Unmarshal([]byte(s), &r)
	return r, err
}

// Naming.

func groupName(prefix, tenant string) string { return prefix + tenant }

func subvolumeName(hash string) string { return subvolumePrefix + hash }

func snapshotName(hash string) string { return snapshotPrefix + hash }

func cloneSnapName(targetHash string) string { return cloneSnapPrefix + targetHash }

// tenantOfGroup returns the tenant a subvolume group belongs to, false for foreign groups.
func tenantOfGroup(prefix, group string) (string, bool) {
	t, ok := strings.CutPrefix(group, prefix)
	if !ok || volid.ValidTenant(t) != nil {
		return "", false
	}
	return t, true
}

// hashOf returns the volid hash in an object name with prefix, false for foreign names.
func hashOf(prefix, name string) (string, bool) {
	h, ok := strings.CutPrefix(name, prefix)
	if !ok || len(h) != volid.HashLen {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return h, true
}

// volumeContext is handed to the node through the CO; rootPath may be empty (a volume
// CreateVolume made: the node gets it in the publish context).
func volumeContext(clusterID, group, sub, rootPath string, p volumeParams) map[string]string {
	ctx := map[string]string{
		CtxFSName: p.FSName, CtxSubvolumeGroup: group, CtxSubvolumeName: sub,
		CtxMounter: p.Mounter, CtxClusterID: clusterID,
	}
	if rootPath != "" {
		ctx[CtxRootPath] = rootPath
	}
	if p.KernelMountOptions != "" {
		ctx[CtxKernelMountOptions] = p.KernelMountOptions
	}
	if p.FuseMountOptions != "" {
		ctx[CtxFuseMountOptions] = p.FuseMountOptions
	}
	return ctx
}
