package storm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakePlugin writes a script that stands in for shiphold-csi: it logs a line, then runs
// body.
func fakePlugin(t *testing.T, body string) *plugin {
	dir := t.TempDir()
	bin := filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho serving\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &plugin{bin: bin, sock: filepath.Join(dir, "sock"), log: filepath.Join(dir, "log"), died: make(chan struct{})}
}

// A plugin that dies by a signal of its own fails the storm with the signal and its log.
func TestStormReportsAPluginCrash(t *testing.T) {
	p := fakePlugin(t, "echo 'SIGSEGV: segmentation violation'\nkill -SEGV $$")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	select {
	case <-p.died:
	case <-time.After(10 * time.Second):
		t.Fatal("the crash was not noticed")
	}
	death := p.crashed()
	for _, want := range []string{"died by itself", "segmentation fault", "SIGSEGV: segmentation violation", "serving"} {
		if !strings.Contains(death, want) {
			t.Errorf("crash report lacks %q:\n%s", want, death)
		}
	}
	if err := p.kill9(); err == nil {
		t.Error("a crashed plugin was started again")
	}
}

// The storm's own SIGKILLs, and the plugin's end at the end of the test, are not crashes;
// an exit status of its own is.
func TestStormTellsItsKillsFromCrashes(t *testing.T) {
	p := fakePlugin(t, "exec sleep 60")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := p.kill9(); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
	}
	p.stop()
	if death := p.crashed(); death != "" || p.kills != 3 {
		t.Fatalf("kills=%d, crash %q; want 3 kills and no crash", p.kills, death)
	}

	q := fakePlugin(t, "exit 3")
	if err := q.start(); err != nil {
		t.Fatal(err)
	}
	defer q.stop()
	<-q.died
	if death := q.crashed(); !strings.Contains(death, "exit status 3") {
		t.Fatalf("crash report %q lacks the exit status", death)
	}
}

// A plugin that crashes at once may write its last lines before the storm writes its
// "started, pid N" line (the child runs first on a busy machine): the report keeps them.
func TestCrashLinesKeepWhatThePluginWroteBeforeItsStartLine(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	content := "an earlier plugin's line\n" + startingLine + "serving\nSIGSEGV: segmentation violation\n" +
		"=== storm: plugin started, pid 7\n=== storm: plugin pid 7 exited: signal: segmentation fault\n"
	if err := os.WriteFile(log, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got := crashLines(log, 7)
	for _, want := range []string{"serving", "SIGSEGV: segmentation violation", "exited: signal: segmentation fault"} {
		if !strings.Contains(got, want) {
			t.Errorf("crash lines lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "an earlier plugin's line") {
		t.Errorf("crash lines reach back into an earlier plugin's log:\n%s", got)
	}
}
