package rbd

import (
	"context"
	"slices"
	"strconv"
	"strings"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

var _ backend.Adopter = (*Controller)(nil)

// volumeImage is the image of a volume: csi-vol-<hash>, or an adopted image's own name.
func volumeImage(id volid.Volume) string {
	if id.Object != "" {
		_, img, _ := strings.Cut(id.Object, "/")
		return img
	}
	return imageName(id.Hash)
}

// volumeNamespace is the RADOS namespace of a volume: its tenant's, or where an adopted
// image was ("" is the pool's default namespace).
func volumeNamespace(id volid.Volume) string {
	if id.Object != "" {
		ns, _, _ := strings.Cut(id.Object, "/")
		return ns
	}
	return id.Tenant
}

// Adopt takes an existing image ("<pool>/<namespace>/<image>", the namespace may be empty)
// under management where it is: shiphold's request record goes into its metadata, and
// every call by its adopted ID reaches it. Images the class's mounter cannot map are
// refused, and so are images another backend or tenant recorded, or shiphold's own.
func (c *Controller) Adopt(ctx context.Context, req *backend.AdoptRequest) (*backend.Volume, error) {
	parts := strings.Split(req.Object, "/")
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return nil, backend.Errorf(backend.InvalidArgument, "rbd: %q is not <pool>/<namespace>/<image> (the namespace may be empty: pool//image)", req.Object)
	}
	pool, ns, image := parts[0], parts[1], parts[2]
	params := map[string]string{}
	for k, v := range req.Parameters {
		params[k] = v
	}
	params[ParamPool] = pool
	opts, err := resolveOptions(params, c.cfg.Pool, c.cfg.ImageFeatures, c.cfg.Mounter)
	if err != nil {
		return nil, err
	}
	var vol *backend.Volume
	err = c.storage.Do(ctx, req.Secrets, func(conn connection) error {
		io, err := openPool(conn, pool, ns)
		if err != nil {
			return err
		}
		defer io.Destroy()
		id, err := volid.Adopted(c.name, req.Tenant, strconv.FormatInt(io.ID(), 10), ns+"/"+image)
		if err != nil {
			return backend.Errorf(backend.InvalidArgument, "rbd: cannot adopt %s: %v", req.Object, err)
		}
		size, err := c.adoptImage(io, ns, req, opts, image)
		if err != nil {
			return err
		}
		rec := newRecord(c.name, &backend.VolumeRequest{Name: req.Name, Tenant: req.Tenant, RequiredBytes: size, Parameters: params})
		if err := setImageMetadata(io, image, recordKey, rec.encode()); err != nil {
			return err
		}
		vol = c.volume(id, size, rec, pool)
		return nil
	})
	return vol, err
}

// adoptImage checks that the image can be adopted and grows it to the size asked.
func (c *Controller) adoptImage(io ioctx, ns string, req *backend.AdoptRequest, opts classOptions, image string) (int64, error) {
	if ns == req.Tenant && strings.HasPrefix(image, imagePrefix) {
		return 0, backend.Errorf(backend.AlreadyExists, "rbd: %s is in shiphold's own place for tenant %q; use its volume ID, do not adopt it", req.Object, req.Tenant)
	}
	st, err := readImage(io, image, false)
	if backend.IsNotFound(err) {
		return 0, backend.Errorf(backend.NotFound, "rbd: no image %s to adopt", req.Object)
	}
	if err != nil {
		return 0, err
	}
	if st.hasRecord && (st.record.Backend != c.name || st.record.Name != req.Name || st.record.Tenant != req.Tenant) {
		return 0, backend.Errorf(backend.AlreadyExists, "rbd: %s is already managed by shiphold (backend %q) as %q of tenant %q; it cannot be adopted as %q of tenant %q",
			req.Object, st.record.Backend, st.record.Name, st.record.Tenant, req.Name, req.Tenant)
	}
	if err := mappable(io, image, opts.Mounter); err != nil {
		return 0, err
	}
	size := int64(st.size)
	if req.SizeBytes > size {
		want, err := roundSize(req.SizeBytes, 0)
		if err != nil {
			return 0, err
		}
		if err := resizeImage(io, image, want); err != nil {
			return 0, err
		}
		size = want
	}
	return size, nil
}

// mappable refuses an image with features the nodes' mounter cannot map.
func mappable(io ioctx, name, mounter string) error {
	var bits uint64
	err := inImage(io, name, func(img image) (err error) {
		bits, err = img.Features()
		return classify(err, "features of image "+name)
	})
	if err != nil {
		return err
	}
	fs := librbd.FeatureSet(bits)
	for _, f := range fs.Names() {
		known := slices.Contains(knownFeatures, f)
		if !known || (!krbdFeatures[f] && (mounter == MounterKRBD || mounter == MounterAuto)) {
			return backend.Errorf(backend.FailedPrecondition, "rbd: image %s has feature %q, which mounter %s cannot map; disable it (rbd feature disable %s %s) or adopt with mounter rbd-nbd or rbd-fuse",
				name, f, mounter, name, f)
		}
	}
	return nil
}

func resizeImage(io ioctx, name string, size int64) error {
	return inImageRW(io, name, func(img image) error {
		return classify(img.Resize(uint64(size)), "resize image "+name)
	})
}
