// Package prereq is the suite's one gate for prerequisites. It imports nothing of shiphold,
// so that every test package, the OneFS simulator's own included, can use it.
package prereq

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// StackRequired reports whether the run demands every prerequisite (SHIPHOLD_REQUIRE_STACK=1,
// as make test and CI set).
func StackRequired() bool { return os.Getenv("SHIPHOLD_REQUIRE_STACK") == "1" }

// Require is called by a test before anything that needs what, with a hint that says how to
// get it. Without what, the test skips; under SHIPHOLD_REQUIRE_STACK=1 it fails, so CI cannot
// pass by skipping.
func Require(t testing.TB, what string, ok bool, hint string) {
	t.Helper()
	if ok {
		return
	}
	if StackRequired() {
		t.Fatalf("%s is not available: %s (SHIPHOLD_REQUIRE_STACK=1: a missing prerequisite fails the test)", what, hint)
	}
	t.Skipf("%s is not available: %s", what, hint)
}

// RequireRoot requires root, which mounts and loop devices need.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	Require(t, "root", os.Geteuid() == 0, why+" needs root: run the tests as root")
}

// RequireCommand requires a program on $PATH and returns its path.
func RequireCommand(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, name, err == nil, fmt.Sprintf("not found in $PATH (%s)", hint))
	return p
}
