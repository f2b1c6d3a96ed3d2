package backend

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeHandle bounds calls by ctx as a Ceph connection does, and counts them.
type fakeHandle struct{ calls *int }

func (h fakeHandle) Do(ctx context.Context, fn func() error) error {
	*h.calls++
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return NoAnswer(ctx.Err(), "")
	}
}

func TestStorageOneRuleForErrors(t *testing.T) {
	calls, connects := 0, 0
	s := Storage[fakeHandle]{Name: "array a1 (at 10.0.0.1)", Address: "10.0.0.1",
		Connect: func(context.Context, map[string]string) (fakeHandle, error) {
			connects++
			return fakeHandle{&calls}, nil
		}}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	// The request ends while its call waits on the storage, however loaded the machine.
	cut, endCall := context.WithCancel(context.Background())
	defer endCall()
	block := make(chan struct{})
	defer close(block)
	testCases := []struct {
		name     string
		ctx      context.Context
		fn       func(fakeHandle) error
		code     Code
		says     []string
		notNamed bool
	}{
		{"answered", context.Background(), func(fakeHandle) error { return nil }, -1, nil, false},
		{"ended request", ended, func(fakeHandle) error { return nil }, Unavailable, []string{"array a1 (at 10.0.0.1): call not started", "canceled"}, false},
		{"request ends during the call", cut, func(fakeHandle) error { endCall(); <-block; return nil }, Unavailable, []string{"array a1 (at 10.0.0.1): no answer before the request deadline"}, false},
		{"unavailable naming the storage", context.Background(), func(fakeHandle) error { return Errorf(Unavailable, "10.0.0.1 refused") }, Unavailable, []string{"10.0.0.1 refused"}, true},
		{"unavailable not naming it", context.Background(), func(fakeHandle) error { return Errorf(Unavailable, "refused") }, Unavailable, []string{"array a1 (at 10.0.0.1): refused"}, false},
		{"other codes untouched", context.Background(), func(fakeHandle) error { return Errorf(NotFound, "no volume") }, NotFound, []string{"no volume"}, true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			calls, connects = 0, 0
			err := s.Do(tc.ctx, nil, tc.fn)
			if tc.code == -1 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if CodeOf(err) != tc.code {
				t.Fatalf("code %v, want %v: %v", CodeOf(err), tc.code, err)
			}
			for _, w := range tc.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			if tc.notNamed && strings.Contains(err.Error(), "array a1") {
				t.Errorf("named twice: %v", err)
			}
			if tc.ctx == ended && (calls != 0 || connects != 0) {
				t.Errorf("an ended request connected %d times and called %d times", connects, calls)
			}
		})
	}
}

// TestSessionEndsWithItsRequest: a session's calls after its request ended start nothing.
func TestSessionEndsWithItsRequest(t *testing.T) {
	calls := 0
	s := Storage[fakeHandle]{Name: "c1", Connect: func(context.Context, map[string]string) (fakeHandle, error) { return fakeHandle{&calls}, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	ss, err := s.Open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Do(func() error { return nil }); err != nil || calls != 1 {
		t.Fatalf("first call: %v, %d calls", err, calls)
	}
	cancel()
	err = ss.Do(func() error { return nil })
	if CodeOf(err) != Unavailable || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("call after the request ended: %v, %d calls", err, calls)
	}
	s.Connect = func(context.Context, map[string]string) (fakeHandle, error) {
		return fakeHandle{}, Errorf(Unavailable, "connection pool closed")
	}
	if _, err := s.Open(context.Background(), nil); CodeOf(err) != Unavailable || err.Error() != "c1: connection pool closed" {
		t.Errorf("connect failed: %v", err)
	}
}
