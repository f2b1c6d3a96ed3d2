//go:build !testhooks

package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestShippedBinaryHasNoSourceHook: without the testhooks tag (the build users get), the
// environment cannot make shipholdctl run a command between opening the source and reading it.
func TestShippedBinaryHasNoSourceHook(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "hook-ran")
	t.Setenv("SHIPHOLDCTL_TEST_AFTER_SOURCE_OPEN", "touch "+mark)
	if err := afterSnapshotHook(context.Background()); err != nil {
		t.Fatalf("the hook of a build without testhooks: %v", err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("a build without the testhooks tag ran SHIPHOLDCTL_TEST_AFTER_SOURCE_OPEN")
	}
}
