package rbd

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/shiphold/shiphold/pkg/backend"
)

// volumeRecord is stored in the image's metadata: the CSI request that made the image, so that
// a retry is recognised and a conflicting request with the same name refused (by
// backend.RequestRecord.Conflict). Records of older versions decode into it unchanged.
type volumeRecord struct {
	backend.RequestRecord
	Backend string `json:"backend"`
}

func newRecord(backendName string, req *backend.VolumeRequest) volumeRecord {
	return volumeRecord{RequestRecord: backend.NewRequestRecord(req), Backend: backendName}
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

// Image metadata is written with the rbd object class, as librbd does, without opening the
// image for writing: a writable open registers a watch on the header, which outlives a
// killed controller by 30 s (slowing every snapshot of the image meanwhile), and one cut
// while registering can stay until the OSD reloads the object, blocking the removal.

// setImageMetadata sets one image metadata key.
func setImageMetadata(io *rados.IOContext, name, key, value string) error {
	return headerOp(io, name, "set metadata "+key, func(op *rados.WriteOp) {
		op.Exec("rbd", "metadata_set", encodeMetadata(key, value))
	})
}

// dropImageMetadata removes the image metadata keys drop selects.
func dropImageMetadata(io *rados.IOContext, name string, drop func(key string) bool) error {
	img, err := librbd.OpenImageReadOnly(io, name, librbd.NoSnapshot)
	if err != nil {
		return classify(err, "open image "+name)
	}
	meta, err := img.ListMetadata()
	img.Close()
	if err != nil {
		return classify(err, "list metadata of image "+name)
	}
	for k := range meta {
		if !drop(k) {
			continue
		}
		if err := headerOp(io, name, "remove metadata "+k, func(op *rados.WriteOp) {
			op.Exec("rbd", "metadata_remove", encodeString(k))
		}); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

// headerOp runs one write operation on an image's header object.
func headerOp(io *rados.IOContext, name, what string, fill func(op *rados.WriteOp)) error {
	img, err := librbd.OpenImageReadOnly(io, name, librbd.NoSnapshot)
	if err != nil {
		return classify(err, "open image "+name)
	}
	id, err := img.GetId()
	img.Close()
	if err != nil {
		return classify(err, "id of image "+name)
	}
	op := rados.CreateWriteOp()
	defer op.Release()
	fill(op)
	if err := op.Operate(io, "rbd_header."+id, rados.OperationNoFlag); err != nil {
		return classify(err, fmt.Sprintf("%s on image %s", what, name))
	}
	return nil
}

// encodeString is Ceph's encoding of a string.
func encodeString(s string) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// encodeMetadata is Ceph's encoding of a map<string, bufferlist> of one entry.
func encodeMetadata(key, value string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 1)
	b = append(b, encodeString(key)...)
	return append(b, encodeString(value)...)
}
