package driver

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/shiphold/shiphold/pkg/ceph"
	"github.com/shiphold/shiphold/pkg/config"
)

// A tenant's key travels in publish contexts, which the CSI sanitizer does not strip: the
// publish response and the node requests that carry it reach the log without it.
func TestPublishedKeyNeverLogged(t *testing.T) {
	logs := captureLogs(t)
	f := newFixture(t, config.Tenants{})
	pc := ceph.PublishContext(ceph.Credentials{UserID: "shiphold.rbd.shop", Key: "AQDtenantkeytenantkey=="})
	calls := []struct {
		method string
		req    any
		resp   any
	}{
		{"/csi.v1.Controller/ControllerPublishVolume", &csi.ControllerPublishVolumeRequest{VolumeId: "v"}, &csi.ControllerPublishVolumeResponse{PublishContext: pc}},
		{"/csi.v1.Node/NodeStageVolume", &csi.NodeStageVolumeRequest{VolumeId: "v", PublishContext: pc}, &csi.NodeStageVolumeResponse{}},
		{"/csi.v1.Node/NodePublishVolume", &csi.NodePublishVolumeRequest{VolumeId: "v", PublishContext: pc}, &csi.NodePublishVolumeResponse{}},
	}
	for _, c := range calls {
		resp, err := f.d.logCalls(context.Background(), c.req, &grpc.UnaryServerInfo{FullMethod: c.method},
			func(context.Context, any) (any, error) { return c.resp, nil })
		if err != nil || resp != c.resp {
			t.Fatalf("%s: %v %v", c.method, resp, err)
		}
	}
	raw, _ := json.Marshal(logs.all())
	if strings.Contains(string(raw), "AQDtenantkey") {
		t.Fatalf("a tenant key reached the log: %s", raw)
	}
	if !strings.Contains(string(raw), "shiphold.rbd.shop") || strings.Count(string(raw), "***stripped***") < 3 {
		t.Fatalf("the logged messages lost more than the key: %s", raw)
	}
	// The handlers saw the key: only the logged copy is stripped.
	if pc[ceph.PublishContextKey] != "AQDtenantkeytenantkey==" {
		t.Fatal("stripping changed the message itself")
	}
}
