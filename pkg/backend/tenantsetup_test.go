package backend

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A setup is remembered once it succeeded, tried again after a failure or a panic, and
// a waiter whose request ends stops waiting.
func TestTenantSetupRemembersSuccessOnly(t *testing.T) {
	var ts TenantSetup
	ctx := context.Background()
	runs := 0
	fail := func() (string, error) { runs++; return "", errors.New("mgr busy") }
	ok := func() (string, error) { runs++; return "pool", nil }
	if _, err := ts.Do(ctx, "k", fail); err == nil {
		t.Fatal("failure not reported")
	}
	if v, err := ts.Do(ctx, "k", ok); err != nil || v != "pool" || runs != 2 {
		t.Fatalf("after a failure: %q %v, %d runs; want it run again", v, err, runs)
	}
	if v, err := ts.Do(ctx, "k", ok); err != nil || v != "pool" || runs != 2 {
		t.Fatalf("after a success: %q %v, %d runs; want it remembered", v, err, runs)
	}
	ts.ForgetSuffix("/g")
	ts.Forget("k")
	if _, err := ts.Do(ctx, "k", ok); err != nil || runs != 3 {
		t.Fatalf("after forget: %v, %d runs", err, runs)
	}

	func() {
		defer func() { _ = recover() }()
		_, _ = ts.Do(ctx, "p", func() (string, error) { panic("boom") })
	}()
	if v, err := ts.Do(ctx, "p", ok); err != nil || v != "pool" {
		t.Fatalf("after a panic: %q %v", v, err)
	}

	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_, _ = ts.Do(ctx, "slow", func() (string, error) { close(started); <-release; return "x", nil })
	}()
	<-started
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := ts.Do(short, "slow", ok); CodeOf(err) != Unavailable {
		t.Errorf("waiter past its deadline: %v, want Unavailable", err)
	}
	close(release)
	if v, err := ts.Do(ctx, "slow", ok); err != nil || v != "x" {
		t.Errorf("after the slow run: %q %v", v, err)
	}
}
