package ceph

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

func TestDoReturnsAtDeadlineAndReportsTheEnd(t *testing.T) {
	var c Calls
	ctx, abandoned := backend.WithAbandoned(context.Background())
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	block := make(chan struct{})
	start := time.Now()
	err := c.Do(ctx, func() error { <-block; return nil })
	if backend.CodeOf(err) != backend.Unavailable || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want Unavailable wrapping the deadline", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("Do returned after %v", time.Since(start))
	}
	done := abandoned.Done()
	if done == nil {
		t.Fatal("the abandoned call was not reported to the request")
	}
	select {
	case <-done:
		t.Fatal("reported finished while the call still runs")
	case <-time.After(20 * time.Millisecond):
	}
	close(block)
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("the end of the abandoned call was never reported")
	}
	if err := c.Do(context.Background(), func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Fatalf("Do lost the call's error: %v", err)
	}
}

func TestDoWithoutDeadlineAbandonsNothing(t *testing.T) {
	var c Calls
	ctx, abandoned := backend.WithAbandoned(context.Background())
	if err := c.Do(ctx, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if abandoned.Done() != nil {
		t.Fatal("a finished call was reported abandoned")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	if err := c.Do(cancelled, func() error { ran = true; return nil }); backend.CodeOf(err) != backend.Unavailable || ran {
		t.Fatalf("a call of an ended request ran (%v) or was not refused: %v", ran, err)
	}
}

// A silent daemon must not pile up threads: past MaxStranded abandoned calls, new calls
// are refused at once, and allowed again once Ceph answers.
func TestStrandedCallsAreCapped(t *testing.T) {
	var c Calls
	block := make(chan struct{})
	for i := 0; i < MaxStranded; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		c.Do(ctx, func() error { <-block; return nil })
		cancel()
	}
	ran := false
	start := time.Now()
	err := c.Do(context.Background(), func() error { ran = true; return nil })
	if ran || backend.CodeOf(err) != backend.Unavailable || time.Since(start) > time.Second {
		t.Fatalf("call %d: ran=%v err=%v after %v; want refused at once", MaxStranded+1, ran, err, time.Since(start))
	}
	close(block)
	deadline := time.Now().Add(5 * time.Second)
	for c.Do(context.Background(), func() error { return nil }) != nil {
		if time.Now().After(deadline) {
			t.Fatal("calls still refused after Ceph answered the stranded ones")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHealth(t *testing.T) {
	cases := []struct {
		name    string
		errs    []error
		old     bool
		healthy bool
	}{
		{"answers", []error{nil, cephErr(-2), cephErr(-17)}, true, true},
		{"blocklisted", []error{cephErr(-int(syscall.ESHUTDOWN))}, false, false},
		{"key refused", []error{cephErr(-int(syscall.EACCES))}, false, false},
		{"timeouts on a young handle", []error{cephErr(-110), cephErr(-110), cephErr(-110)}, false, true},
		{"timeouts on an old handle", []error{cephErr(-110), cephErr(-110), cephErr(-110)}, true, false},
		{"an answer between timeouts", []error{cephErr(-110), cephErr(-110), nil, cephErr(-110)}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Calls{born: time.Now()}
			if tc.old {
				c.born = time.Now().Add(-replaceAge)
			}
			for _, e := range tc.errs {
				c.Do(context.Background(), func() error { return e })
			}
			if why := c.unhealthy(); (why == "") != tc.healthy {
				t.Fatalf("unhealthy() = %q, want healthy=%v", why, tc.healthy)
			}
		})
	}
}

func TestAbandonedCallsCountAsTimeouts(t *testing.T) {
	c := Calls{born: time.Now().Add(-replaceAge)}
	block := make(chan struct{})
	defer close(block)
	for i := 0; i < timeoutsToReplace; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		c.Do(ctx, func() error { <-block; return nil })
		cancel()
	}
	if c.unhealthy() == "" {
		t.Fatal("a handle whose calls all went unanswered is called healthy")
	}
}

// Retiring never shuts a handle down under a call: shutdown waits for the last call.
func TestRetireWaitsForRunningCalls(t *testing.T) {
	shut := make(chan struct{})
	c := Calls{onIdle: func() { close(shut) }}
	block := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	c.Do(ctx, func() error { <-block; return nil })
	c.retire("test")
	select {
	case <-shut:
		t.Fatal("handle shut down with a call in flight")
	case <-time.After(20 * time.Millisecond):
	}
	close(block)
	select {
	case <-shut:
	case <-time.After(time.Second):
		t.Fatal("handle not shut down after its last call")
	}
	if err := c.Do(context.Background(), func() error { t.Error("a call ran on a shut handle"); return nil }); backend.CodeOf(err) != backend.Unavailable {
		t.Fatalf("call on a shut handle: %v, want Unavailable", err)
	}
}
