package isilon

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shiphold/shiphold/pkg/backend"
)

// TestEndedRequestSendsNothing: as with Ceph, a request whose context has ended fails
// Unavailable "not started" and sends the array nothing (the free slot used to race the
// ended context, and the create went through about every other time).
func TestEndedRequestSendsNothing(t *testing.T) {
	c, f, _ := testController(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 20; i++ {
		_, err := c.CreateVolume(ctx, req("a", 1))
		if backend.CodeOf(err) != backend.Unavailable || !strings.Contains(err.Error(), "not started") || !strings.Contains(err.Error(), "https://array:8080") {
			t.Fatalf("create %d with an ended request: %v", i, err)
		}
	}
	if len(f.calls) != 0 {
		t.Errorf("an ended request sent the array %v", f.calls)
	}
}

// TestRequestDeadlineSaysSo: a Platform API request cut by the CSI request's deadline fails
// as a Ceph call cut by it does, Unavailable "no answer before the request deadline", and
// does not blame the array's request timeout (30 s) that never passed.
func TestRequestDeadlineSaysSo(t *testing.T) {
	c, _, _ := testController(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := c.storage.Do(ctx, goodSecrets, func(client) error {
		cancel() // the request ends while its HTTP request waits, and goisilon's is cut
		<-ctx.Done()
		return classify(&url.Error{Op: "Get", URL: "https://array:8080/platform/1/quota/quotas", Err: ctx.Err()}, "https://array:8080", "read quota", DefaultRequestTimeout)
	})
	if backend.CodeOf(err) != backend.Unavailable || !strings.Contains(err.Error(), "no answer before the request deadline") ||
		!strings.Contains(err.Error(), "isilon https://array:8080") || strings.Contains(err.Error(), "request timeout") {
		t.Errorf("a request cut by its deadline: %v", err)
	}
}

// TestPanickingRequestFreesItsSlot: a request whose work panics (the driver's recovery
// interceptor answers INTERNAL and the plugin serves on) must give its in-flight slot back,
// or every slot would leak until the array looked hung.
func TestPanickingRequestFreesItsSlot(t *testing.T) {
	c, _, _ := testController(t)
	for i := 0; i < cap(c.conn.slots)+1; i++ {
		func() {
			defer func() { _ = recover() }()
			_ = c.storage.Do(context.Background(), goodSecrets, func(client) error { panic("a bug") })
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.storage.Do(ctx, goodSecrets, func(client) error { return nil }); err != nil {
		t.Fatalf("after %d panicking requests: %v", cap(c.conn.slots)+1, err)
	}
}
