package mounter

import (
	"context"
	"strings"
	"sync"

	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
	testingexec "k8s.io/utils/exec/testing"
)

// FakeExec answers every command with Handler (success and no output when nil) and records
// each command line, so that tests check what would run without running it.
type FakeExec struct {
	mu      sync.Mutex
	Calls   []string
	Handler func(name string, args ...string) ([]byte, error)
}

var _ utilexec.Interface = &FakeExec{}

func (f *FakeExec) Command(name string, args ...string) utilexec.Cmd {
	return f.CommandContext(context.Background(), name, args...)
}

func (f *FakeExec) CommandContext(_ context.Context, name string, args ...string) utilexec.Cmd {
	f.mu.Lock()
	f.Calls = append(f.Calls, strings.TrimSpace(name+" "+strings.Join(args, " ")))
	h := f.Handler
	f.mu.Unlock()
	run := func() ([]byte, []byte, error) {
		if h == nil {
			return nil, nil, nil
		}
		out, err := h(name, args...)
		return out, nil, err
	}
	cmd := &testingexec.FakeCmd{
		CombinedOutputScript: []testingexec.FakeAction{run},
		OutputScript:         []testingexec.FakeAction{run},
		RunScript:            []testingexec.FakeAction{run},
	}
	return testingexec.InitFakeCmd(cmd, name, args...)
}

func (f *FakeExec) LookPath(file string) (string, error) { return "/usr/bin/" + file, nil }

// Commands returns the recorded command lines.
func (f *FakeExec) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Calls...)
}

// NewFake returns a Mounter on a mount.FakeMounter and a FakeExec.
func NewFake() (*Mounter, *mount.FakeMounter, *FakeExec) {
	fm := mount.NewFakeMounter(nil)
	fe := &FakeExec{}
	return NewWith(fm, fe), fm, fe
}
