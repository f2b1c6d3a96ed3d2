package cephfs

import "os/exec"

// runQuiet runs a command for its exit status only.
func runQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}
