package driver

import (
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// BackendOf names the backend a CSI request addresses, for metrics labels: the StorageClass
// parameter on create, else the backend field of the volume or snapshot ID. Requests that
// address no backend (identity, capabilities, bad IDs) get "none".
func BackendOf(_ string, req any) string {
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		return orNone(r.GetParameters()[backend.ParamBackend])
	case *csi.GetCapacityRequest:
		return orNone(r.GetParameters()[backend.ParamBackend])
	case *csi.CreateSnapshotRequest:
		return volumeBackend(r.GetSourceVolumeId())
	case *csi.DeleteSnapshotRequest:
		return snapshotBackend(r.GetSnapshotId())
	case interface{ GetVolumeId() string }:
		return volumeBackend(r.GetVolumeId())
	}
	return "none"
}

func volumeBackend(id string) string {
	v, err := volid.ParseVolume(id)
	if err != nil {
		return "none"
	}
	return v.Backend
}

func snapshotBackend(id string) string {
	s, err := volid.ParseSnapshot(id)
	if err != nil {
		return "none"
	}
	return s.Backend
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
