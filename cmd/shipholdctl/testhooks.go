//go:build testhooks

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// afterSnapshotHookEnv names a shell command run once the source is open (its snapshot
// taken) and before anything is read: tests change the source at that point, free of timing.
// Only a build with -tags testhooks (test/migrate's) has it: the shipped binary runs nothing.
const afterSnapshotHookEnv = "SHIPHOLDCTL_TEST_AFTER_SOURCE_OPEN"

func afterSnapshotHook(ctx context.Context) error {
	hook := os.Getenv(afterSnapshotHookEnv)
	if hook == "" {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "/bin/sh", "-c", hook).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", afterSnapshotHookEnv, err, out)
	}
	return nil
}
