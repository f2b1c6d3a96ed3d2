package backend

import (
	"errors"
	"fmt"
)

// Code classifies a storage failure. The driver turns each into the gRPC code the CSI
// spec names for it; backends stay free of gRPC.
type Code int

const (
	Internal Code = iota
	NotFound
	AlreadyExists
	InvalidArgument
	Unavailable
	ResourceExhausted
	OutOfRange
	FailedPrecondition
	// Pending means the operation is progressing in the background (a clone copying);
	// the caller should retry later.
	Pending
	Unimplemented
)

var codeNames = map[Code]string{
	Internal: "internal", NotFound: "not found", AlreadyExists: "already exists",
	InvalidArgument: "invalid argument", Unavailable: "unavailable",
	ResourceExhausted: "resource exhausted", OutOfRange: "out of range",
	FailedPrecondition: "failed precondition", Pending: "pending", Unimplemented: "unimplemented",
}

func (c Code) String() string { return codeNames[c] }

// StorageError is a classified backend failure. Msg says what went wrong and what to fix.
type StorageError struct {
	Code Code
	Msg  string
	Err  error
}

func (e *StorageError) Error() string {
	if e.Err != nil && e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *StorageError) Unwrap() error { return e.Err }

// Errorf builds a StorageError; a %w verb keeps the cause for errors.Is/As.
func Errorf(code Code, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &StorageError{Code: code, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// CodeOf returns the classification of err, Internal for unclassified errors.
func CodeOf(err error) Code {
	var se *StorageError
	if errors.As(err, &se) {
		return se.Code
	}
	return Internal
}

// IsNotFound reports whether err is classified NotFound.
func IsNotFound(err error) bool { return err != nil && CodeOf(err) == NotFound }
