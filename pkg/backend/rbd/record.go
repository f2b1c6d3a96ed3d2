package rbd

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

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
func setImageMetadata(io ioctx, name, key, value string) error {
	return headerOp(io, name, "set metadata "+key, "metadata_set", encodeMetadata(key, value))
}

// dropImageMetadata removes the image metadata keys drop selects.
func dropImageMetadata(io ioctx, name string, drop func(key string) bool) error {
	var meta map[string]string
	err := inImage(io, name, func(img image) (err error) {
		meta, err = img.ListMetadata()
		return classify(err, "list metadata of image "+name)
	})
	if err != nil {
		return err
	}
	for k := range meta {
		if !drop(k) {
			continue
		}
		if err := headerOp(io, name, "remove metadata "+k, "metadata_remove", encodeString(k)); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

// headerOp runs one rbd object class method on an image's header object, found by the
// image's rbd_id object rather than by opening the image.
func headerOp(io ioctx, name, what, method string, in []byte) error {
	id, err := io.ImageID(name)
	if err != nil {
		return classify(err, "id of image "+name)
	}
	if err := io.Exec("rbd_header."+id, method, in); err != nil {
		return classify(err, fmt.Sprintf("%s on image %s", what, name))
	}
	return nil
}

// encodeString is Ceph's encoding of a string.
func encodeString(s string) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// decodeString reads a Ceph-encoded string off the front of b.
func decodeString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) < 4 {
		return "", b, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(len(b)-4) < uint64(n) {
		return "", b, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

// encodeMetadata is Ceph's encoding of a map<string, bufferlist> of one entry.
func encodeMetadata(key, value string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 1)
	b = append(b, encodeString(key)...)
	return append(b, encodeString(value)...)
}
