//go:build !testhooks

package main

import "context"

// afterSnapshotHook is a test build's pause between opening the source and reading it
// (testhooks.go); the shipped binary has none.
func afterSnapshotHook(context.Context) error { return nil }
