package driver

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/proto"

	"github.com/shiphold/shiphold/pkg/backend"
)

// withoutPublishedKeys hides the tenant keys a publish context carries (the CSI spec does
// not mark publish_context secret, so the sanitizer keeps it) before a message is logged.
func withoutPublishedKeys(msg any) any {
	var pc *map[string]string
	switch m := msg.(type) {
	case *csi.ControllerPublishVolumeResponse:
		c := proto.Clone(m).(*csi.ControllerPublishVolumeResponse)
		msg, pc = c, &c.PublishContext
	case *csi.NodeStageVolumeRequest:
		c := proto.Clone(m).(*csi.NodeStageVolumeRequest)
		msg, pc = c, &c.PublishContext
	case *csi.NodePublishVolumeRequest:
		c := proto.Clone(m).(*csi.NodePublishVolumeRequest)
		msg, pc = c, &c.PublishContext
	default:
		return msg
	}
	for _, k := range backend.SecretPublishContextKeys {
		if _, ok := (*pc)[k]; ok {
			(*pc)[k] = "***stripped***"
		}
	}
	return msg
}
