package driver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/shiphold/shiphold/pkg/volid"
)

// DefaultSlowCall is the duration past which a call is logged as slow at the default
// verbosity.
const DefaultSlowCall = 10 * time.Second

// logCalls gives each call a logger carrying request_id, method, volume_id, tenant and
// backend (and duration on every line), puts it in the context for everything down the
// call path (klog.FromContext), and logs the outcome. Requests and responses pass the
// sanitizer: secrets never reach a log.
func (d *Driver) logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	logger := klog.FromContext(ctx)
	if sink := logger.GetSink(); sink != nil {
		logger = logr.New(requestSink{LogSink: withDepth(sink, 1), start: start})
	}
	logger = logger.WithValues(requestValues(info.FullMethod, req)...)
	ctx = klog.NewContext(ctx, logger)
	logger.V(4).Info("Request", "request", protosanitizer.StripSecrets(withoutPublishedKeys(req)))
	resp, err := handler(ctx, req)
	if id := createdVolumeID(resp); id != "" {
		logger = logger.WithValues("created_volume_id", id)
	}
	took := time.Since(start)
	switch {
	case err != nil:
		logger.Error(err, "Call failed", "code", status.Code(err).String())
	case took >= d.slowCallAfter():
		logger.Info("Slow call", "threshold", d.slowCallAfter())
	default:
		logger.V(2).Info("Call done")
	}
	if err == nil {
		logger.V(4).Info("Response", "response", protosanitizer.StripSecrets(withoutPublishedKeys(resp)))
	}
	return resp, err
}

func (d *Driver) slowCallAfter() time.Duration {
	if d.slowCall > 0 {
		return d.slowCall
	}
	return DefaultSlowCall
}

// recoverPanics turns a panic in a handler into INTERNAL, logged with its stack, so one
// bad request cannot take the plugin (and every mount it serves requests for) down.
func recoverPanics(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			klog.FromContext(ctx).Error(fmt.Errorf("panic: %v", p), "Call panicked; answering INTERNAL", "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "%s: internal error in shiphold (a panic: %v); the plugin logged its stack, please report it", info.FullMethod, p)
		}
	}()
	return handler(ctx, req)
}

// requestValues are the fields every line of a request carries.
func requestValues(fullMethod string, req any) []any {
	method := fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
	var volumeID, tenant, name, snapshotID string
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		name = r.GetName()
		tenant, _ = tenantOf(r.GetParameters())
	case *csi.CreateSnapshotRequest:
		name, volumeID = r.GetName(), r.GetSourceVolumeId()
	case *csi.DeleteSnapshotRequest:
		snapshotID = r.GetSnapshotId()
		if s, err := volid.ParseSnapshot(snapshotID); err == nil {
			tenant = s.Tenant
		}
	case interface{ GetVolumeId() string }:
		volumeID = r.GetVolumeId()
	}
	if v, err := volid.ParseVolume(volumeID); err == nil {
		tenant = v.Tenant
	}
	kv := []any{"request_id", newRequestID(), "method", method, "volume_id", volumeID, "tenant", tenant, "backend", BackendOf(fullMethod, req)}
	if name != "" {
		kv = append(kv, "name", name)
	}
	if snapshotID != "" {
		kv = append(kv, "snapshot_id", snapshotID)
	}
	return kv
}

func createdVolumeID(resp any) string {
	if r, ok := resp.(*csi.CreateVolumeResponse); ok {
		return r.GetVolume().GetVolumeId()
	}
	return ""
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requestSink adds the time since the request began to every line logged for it.
type requestSink struct {
	logr.LogSink
	start time.Time
}

// Init does nothing: the sink wrapped was initialized when its logger was made.
func (s requestSink) Init(logr.RuntimeInfo) {}

func (s requestSink) Info(level int, msg string, kv ...any) {
	s.LogSink.Info(level, msg, append(kv, "duration", time.Since(s.start))...)
}

func (s requestSink) Error(err error, msg string, kv ...any) {
	s.LogSink.Error(err, msg, append(kv, "duration", time.Since(s.start))...)
}

func (s requestSink) WithValues(kv ...any) logr.LogSink {
	return requestSink{LogSink: s.LogSink.WithValues(kv...), start: s.start}
}

func (s requestSink) WithName(name string) logr.LogSink {
	return requestSink{LogSink: s.LogSink.WithName(name), start: s.start}
}

func (s requestSink) WithCallDepth(depth int) logr.LogSink {
	return requestSink{LogSink: withDepth(s.LogSink, depth), start: s.start}
}

// withDepth makes a sink that reports callers skip depth more frames (the requestSink's own).
func withDepth(sink logr.LogSink, depth int) logr.LogSink {
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		return cd.WithCallDepth(depth)
	}
	return sink
}
