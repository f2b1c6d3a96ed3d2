package backend

import (
	"context"
	"strings"
)

// Handle is a backend's connection to its storage: a pooled Ceph connection, a OneFS
// client, or a unit test's fake. Do runs fn, calls on the handle, bounded by ctx; when ctx
// ends first it returns an Unavailable error (the handle decides what becomes of fn).
type Handle interface {
	Do(ctx context.Context, fn func() error) error
}

// Storage is the one way every backend does work against its storage under a request's
// deadline: Connect gives the handle for the request's secrets, and each piece of work
// runs through the handle's Do. Errors follow one rule for all backends: a request whose
// context has ended starts nothing (NotStarted), and an Unavailable error says which
// storage did not answer.
type Storage[H Handle] struct {
	// Name names the storage in errors: "Ceph cluster c1 (monitors 10.0.0.1:6789)",
	// "isilon https://array:8080".
	Name string
	// Address is what an error message that already names the storage contains (the
	// monitors, the endpoint); Name is put in front of Unavailable errors without it.
	Address string
	// Connect returns the handle for a request's secrets (the backend's configured
	// credentials when there are none). Unit tests give one that returns a fake.
	Connect func(ctx context.Context, secrets map[string]string) (H, error)
}

// Session is one request's handle: every call through Do is bounded by the request's context.
type Session[H Handle] struct {
	Handle  H
	ctx     context.Context
	storage *Storage[H]
}

// Open connects for a request; nothing is asked of the storage when ctx has ended.
func (s *Storage[H]) Open(ctx context.Context, secrets map[string]string) (*Session[H], error) {
	if err := ctx.Err(); err != nil {
		return nil, s.named(NotStarted(err))
	}
	h, err := s.Connect(ctx, secrets)
	if err != nil {
		return nil, s.named(err)
	}
	return &Session[H]{Handle: h, ctx: ctx, storage: s}, nil
}

// Do connects for a request and runs fn on the handle in one bounded call.
func (s *Storage[H]) Do(ctx context.Context, secrets map[string]string, fn func(H) error) error {
	ss, err := s.Open(ctx, secrets)
	if err != nil {
		return err
	}
	return ss.Do(func() error { return fn(ss.Handle) })
}

// Do runs fn, calls on the session's handle, bounded by the request's context.
func (s *Session[H]) Do(fn func() error) error {
	if err := s.ctx.Err(); err != nil {
		return s.storage.named(NotStarted(err))
	}
	return s.storage.named(s.Handle.Do(s.ctx, fn))
}

// named puts the storage's name in front of an Unavailable error that does not say which
// storage it is about: the operator has to know where to look.
func (s *Storage[H]) named(err error) error {
	if err == nil || CodeOf(err) != Unavailable || s.Name == "" {
		return err
	}
	if s.Address != "" && strings.Contains(err.Error(), s.Address) {
		return err
	}
	return Errorf(Unavailable, "%s: %w", s.Name, err)
}

// NotStarted is the error of work on the storage that a request's ended context (err)
// stopped before anything was sent.
func NotStarted(err error) error {
	return Errorf(Unavailable, "call not started: %w", err)
}

// NoAnswer is the error of a call the storage did not answer before the request's
// context (err) ended; after says what becomes of the call.
func NoAnswer(err error, after string) error {
	if after == "" {
		return Errorf(Unavailable, "no answer before the request deadline (%w)", err)
	}
	return Errorf(Unavailable, "no answer before the request deadline (%w); %s", err, after)
}
