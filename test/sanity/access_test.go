package sanity

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// csi-test v5.6.0 has no access-mode setting: every spec asks for SINGLE_NODE_WRITER (a
// few ask for another mode on purpose). asMode is a client interceptor that sends every
// SINGLE_NODE_WRITER capability as mode instead, so the whole suite runs against volumes
// created, published, staged and validated for mode.
func asMode(mode csi.VolumeCapability_AccessMode_Mode) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if m, ok := req.(proto.Message); ok {
			// A copy: csi-sanity keeps its request objects and may send them again.
			c := proto.Clone(m)
			rewriteModes(c.ProtoReflect(), mode)
			req = c
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// rewriteModes walks a message and replaces SINGLE_NODE_WRITER access modes with mode.
func rewriteModes(m protoreflect.Message, mode csi.VolumeCapability_AccessMode_Mode) {
	if am, ok := m.Interface().(*csi.VolumeCapability_AccessMode); ok {
		if am.Mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER {
			am.Mode = mode
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				rewriteModes(l.Get(i).Message(), mode)
			}
		case fd.IsMap():
			// CSI maps hold strings only.
		case fd.Message() != nil:
			rewriteModes(v.Message(), mode)
		}
		return true
	})
}

// TestAsModeRewritesEveryCapability: the multi-node runs mean what they say only if every
// SINGLE_NODE_WRITER capability, nested or listed, reaches the driver as the new mode, and
// the modes csi-sanity chose on purpose stay.
func TestAsModeRewritesEveryCapability(t *testing.T) {
	capOf := func(m csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
		return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: m},
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
	}
	create := &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{
		capOf(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER), capOf(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)}}
	publish := &csi.NodePublishVolumeRequest{VolumeId: "v", VolumeCapability: capOf(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}
	mnmw := csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	var sent []any
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		sent = append(sent, req)
		return nil
	}
	for _, req := range []any{create, publish} {
		if err := asMode(mnmw)(context.Background(), "/m", req, nil, nil, invoker); err != nil {
			t.Fatal(err)
		}
	}
	gotCreate, gotPublish := sent[0].(*csi.CreateVolumeRequest), sent[1].(*csi.NodePublishVolumeRequest)
	if m := gotCreate.VolumeCapabilities[0].AccessMode.Mode; m != mnmw {
		t.Errorf("listed capability sent as %v", m)
	}
	if m := gotCreate.VolumeCapabilities[1].AccessMode.Mode; m != csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		t.Errorf("a deliberate SINGLE_NODE_SINGLE_WRITER was sent as %v", m)
	}
	if m := gotPublish.VolumeCapability.AccessMode.Mode; m != mnmw {
		t.Errorf("nested capability sent as %v", m)
	}
	if m := create.VolumeCapabilities[0].AccessMode.Mode; m != csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER {
		t.Errorf("the caller's own request was changed to %v", m)
	}
}
