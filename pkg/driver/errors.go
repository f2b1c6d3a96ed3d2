package driver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiphold/shiphold/pkg/backend"
)

var grpcCodes = map[backend.Code]codes.Code{
	backend.Internal:           codes.Internal,
	backend.NotFound:           codes.NotFound,
	backend.AlreadyExists:      codes.AlreadyExists,
	backend.InvalidArgument:    codes.InvalidArgument,
	backend.Unavailable:        codes.Unavailable,
	backend.ResourceExhausted:  codes.ResourceExhausted,
	backend.OutOfRange:         codes.OutOfRange,
	backend.FailedPrecondition: codes.FailedPrecondition,
	backend.Pending:            codes.Aborted,
	backend.Unimplemented:      codes.Unimplemented,
}

// toStatus maps a backend error onto the gRPC code the CSI spec names, keeping its message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) && backend.CodeOf(err) == backend.Internal {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if errors.Is(err, context.Canceled) && backend.CodeOf(err) == backend.Internal {
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(grpcCodes[backend.CodeOf(err)], err.Error())
}

// toStatusWhile is toStatus for a failure met while doing what: the code stays the one the
// backend's error carries (a refused key is no reason to retry), the message says where.
func toStatusWhile(err error, what string) error {
	if s, ok := status.FromError(err); ok {
		return status.Errorf(s.Code(), "%s: %s", what, s.Message())
	}
	return toStatus(backend.Errorf(backend.CodeOf(err), "%s: %w", what, err))
}
