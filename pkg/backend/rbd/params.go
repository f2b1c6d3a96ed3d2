package rbd

import (
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// StorageClass parameters of the rbd kind.
const (
	ParamPool          = "pool"
	ParamImageFeatures = "imageFeatures"
	ParamMounter       = "mounter"
)

// Attach strategies, as written in the mounter parameter and the config.
const (
	MounterKRBD    = "krbd"
	MounterNBD     = "rbd-nbd"
	MounterFuse    = "rbd-fuse"
	MounterAuto    = "auto"
	defaultMounter = MounterAuto
)

// Volume context keys handed to the node.
const (
	CtxClusterID     = "clusterID"
	CtxPool          = "pool"
	CtxNamespace     = "radosNamespace"
	CtxImage         = "imageName"
	CtxMounter       = "mounter"
	CtxFsType        = "fsType"
	CtxImageFeatures = "imageFeatures"
)

const (
	imagePrefix   = "csi-vol-"
	snapPrefix    = "csi-snap-"
	tmpSnapPrefix = "csi-tmp-"
	// recordKey is the image metadata key holding the volumeRecord.
	recordKey = "shiphold.volume"
	// sizeUnit is the allocation granularity: sizes are whole MiB, as the rbd CLI creates them.
	sizeUnit = 1 << 20
)

func imageName(hash string) string { return imagePrefix + hash }
func snapName(hash string) string  { return snapPrefix + hash }

// knownFeatures are the features a StorageClass may ask for, by their rbd names; the rest
// (striping, data-pool, operations, migrating) are set by librbd itself or need options this
// driver does not expose.
var knownFeatures = []string{"layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten", "journaling"}

// featureNeeds lists each feature's prerequisite, as librbd enforces it.
var featureNeeds = map[string]string{
	"object-map": "exclusive-lock",
	"fast-diff":  "object-map",
	"journaling": "exclusive-lock",
}

// krbdFeatures are what the kernel client maps (object-map, fast-diff, deep-flatten since
// Linux 5.3); rbd-nbd and rbd-fuse use librbd and map every feature.
var krbdFeatures = map[string]bool{"layering": true, "exclusive-lock": true, "object-map": true, "fast-diff": true, "deep-flatten": true}

// parseFeatures validates a comma-separated feature list. layering is always added: snapshots
// are cloned from, so every image must support it.
func parseFeatures(list, mounter string) ([]string, error) {
	set := map[string]bool{"layering": true}
	known := map[string]bool{}
	for _, f := range knownFeatures {
		known[f] = true
	}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !known[f] {
			return nil, backend.Errorf(backend.InvalidArgument, "StorageClass parameter %s: unknown image feature %q; valid features: %s",
				ParamImageFeatures, f, strings.Join(knownFeatures, ", "))
		}
		set[f] = true
	}
	for f := range set {
		if need, ok := featureNeeds[f]; ok && !set[need] {
			return nil, backend.Errorf(backend.InvalidArgument, "StorageClass parameter %s: image feature %q needs %q; add it to the list", ParamImageFeatures, f, need)
		}
		if !krbdFeatures[f] && (mounter == MounterKRBD || mounter == MounterAuto) {
			return nil, backend.Errorf(backend.InvalidArgument, "StorageClass parameter %s: image feature %q cannot be mapped by the kernel client (mounter %s); use mounter rbd-nbd or rbd-fuse, or drop the feature",
				ParamImageFeatures, f, mounter)
		}
	}
	out := make([]string, 0, len(set))
	for _, f := range knownFeatures {
		if set[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

func validMounter(m string) error {
	switch m {
	case MounterKRBD, MounterNBD, MounterFuse, MounterAuto:
		return nil
	}
	return backend.Errorf(backend.InvalidArgument, "StorageClass parameter %s: %q is not an attach strategy; use krbd, rbd-nbd, rbd-fuse or auto", ParamMounter, m)
}

// classOptions are a CreateVolume's StorageClass parameters, resolved against the config.
type classOptions struct {
	Pool     string
	Features []string
	Mounter  string
	FsType   string
}

func resolveOptions(params map[string]string, defPool, defFeatures, defMounter string) (classOptions, error) {
	o := classOptions{Pool: params[ParamPool], Mounter: params[ParamMounter], FsType: params[backend.ParamFsType]}
	if o.Pool == "" {
		o.Pool = defPool
	}
	if o.Mounter == "" {
		o.Mounter = defMounter
	}
	if o.Mounter == "" {
		o.Mounter = defaultMounter
	}
	if err := validMounter(o.Mounter); err != nil {
		return o, err
	}
	feats := params[ParamImageFeatures]
	if feats == "" {
		feats = defFeatures
	}
	var err error
	o.Features, err = parseFeatures(feats, o.Mounter)
	return o, err
}

// roundSize rounds required up to whole MiB and checks it against limit (0 = none).
func roundSize(required, limit int64) (int64, error) {
	if required <= 0 {
		required = sizeUnit
	}
	size := (required + sizeUnit - 1) / sizeUnit * sizeUnit
	if limit > 0 && size > limit {
		return 0, backend.Errorf(backend.OutOfRange, "rbd allocates whole MiB: %d bytes required round up to %d, over limit_bytes %d", required, size, limit)
	}
	return size, nil
}

// volumeContext is what the node needs to attach the image.
func volumeContext(clusterID, pool, ns, image string, o classOptions) map[string]string {
	ctx := map[string]string{
		CtxClusterID: clusterID, CtxPool: pool, CtxNamespace: ns, CtxImage: image,
		CtxMounter: o.Mounter, CtxImageFeatures: strings.Join(o.Features, ","),
	}
	if o.FsType != "" {
		ctx[CtxFsType] = o.FsType
	}
	return ctx
}

// snapHashOf returns the hash in a csi-snap- name, or "" for other snapshots.
func snapHashOf(name string) string {
	h, ok := strings.CutPrefix(name, snapPrefix)
	if !ok || len(h) != volid.HashLen {
		return ""
	}
	return h
}

// volumeHashOf returns the hash in a csi-vol- image name, or "" for other images.
func volumeHashOf(name string) string {
	h, ok := strings.CutPrefix(name, imagePrefix)
	if !ok || len(h) != volid.HashLen {
		return ""
	}
	return h
}
