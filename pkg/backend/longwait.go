package backend

import (
	"context"
	"time"

	"k8s.io/klog/v2"
)

// LongWait logs the start of a wait that can take minutes (a clone's copy, a flatten, a
// FUSE daemon's start) with the request's logger from ctx, and returns the function that
// logs its end: an admin reading the logs of a slow call sees what it waited for.
func LongWait(ctx context.Context, what string, kv ...any) (done func(err error)) {
	logger := klog.FromContext(ctx).WithValues(append([]any{"wait", what}, kv...)...)
	logger.Info("Waiting")
	start := time.Now()
	return func(err error) {
		switch {
		case CodeOf(err) == Pending:
			logger.Info("Still waiting; the request answers Pending and its retry waits on", "waited", time.Since(start), "status", err.Error())
		case err != nil:
			logger.Error(err, "Wait failed", "waited", time.Since(start))
		default:
			logger.Info("Wait over", "waited", time.Since(start))
		}
	}
}
