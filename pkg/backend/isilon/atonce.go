package isilon

import (
	"fmt"

	"github.com/shiphold/shiphold/pkg/backend"
)

// atOnce sends two requests that do not depend on each other side by side, so the array
// answers both in one round trip's time instead of two (issue 15: a delete's lookups and
// removals, a publish's lookups). It returns each one's error; a panic in second
// comes back as an Internal error rather than ending the process (first runs on the
// caller's goroutine, where the driver's recovery interceptor catches it).
func atOnce(first, second func() error) (firstErr, secondErr error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- backend.Errorf(backend.Internal, "isilon: %v", fmt.Sprint(r))
			}
		}()
		done <- second()
	}()
	firstErr = first()
	return firstErr, <-done
}
