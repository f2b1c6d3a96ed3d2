package testreport

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/go-test.json is real `go test -json ./...` output (go 1.26) of a module with a
// passing, a skipping and a failing test, a skipping subtest with a two-line message, a
// package that does not build and one without tests.
func render(t *testing.T, verbose bool) (Result, string, []byte) {
	t.Helper()
	in, err := os.ReadFile("testdata/go-test.json")
	if err != nil {
		t.Fatal(err)
	}
	var out, raw bytes.Buffer
	res, err := Render(bytes.NewReader(in), &raw, &out, verbose)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw.Bytes(), in) {
		t.Errorf("the saved stream differs from the input")
	}
	return res, out.String(), in
}

func TestRenderFindsSkipsAndFailures(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		res, _, _ := render(t, verbose)
		checkResult(t, res)
	}
}

func checkResult(t *testing.T, res Result) {
	t.Helper()
	want := []Skip{
		{Package: "tj", Test: "TestB", Reason: "no thing: get it"},
		{Package: "tj", Test: "TestC/sub", Reason: "sub skip second line"},
	}
	if len(res.Skips) != len(want) {
		t.Fatalf("skips %v, want %v (a package without tests is not a skipped test)", res.Skips, want)
	}
	for i := range want {
		if res.Skips[i] != want[i] {
			t.Errorf("skip %d: %+v, want %+v", i, res.Skips[i], want[i])
		}
	}
	// TestC/f, TestC, package tj, and the build of tj/b (its package fail counts too)
	if res.Failures != 5 {
		t.Errorf("failures %d, want 5", res.Failures)
	}
}

func TestRenderPrintsWhatGoTestPrints(t *testing.T) {
	_, out, _ := render(t, false)
	for _, s := range []string{
		"--- SKIP: TestB", "a_test.go:6: no thing: get it",
		"--- FAIL: TestC/f", "a_test.go:9: bad", "FAIL\ttj\t",
		"syntax error", "FAIL\ttj/b [build failed]", "?   \ttj/c\t[no test files]",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "--- SKIP: TestB (0.00s)\n    a_test.go:6: no thing: get it\n") {
		t.Errorf("the skip's reason does not follow its --- SKIP line:\n%s", out)
	}
	for _, s := range []string{"=== RUN", "hello", "--- PASS"} {
		if strings.Contains(out, s) {
			t.Errorf("plain output has %q (only go test -v prints it):\n%s", s, out)
		}
	}
	_, verbose, _ := render(t, true)
	for _, s := range []string{"=== RUN   TestA", "a_test.go:5: hello", "--- PASS: TestA"} {
		if !strings.Contains(verbose, s) {
			t.Errorf("verbose output lacks %q", s)
		}
	}
}

func TestAllowList(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "allowed")
	write := func(s string) {
		if err := os.WriteFile(list, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# comment\ntest/rbd TestRBDRealBench\n")
	if _, err := ReadAllowList(list); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("an entry without a reason: %v, want an error naming line 2", err)
	}
	write("# comment\n\ntest/rbd TestRBDRealBench opt-in benchmark (SHIPHOLD_BENCH=1)\ntj TestC/* subtests may skip\n")
	allowed, err := ReadAllowList(list)
	if err != nil {
		t.Fatal(err)
	}
	skips := []Skip{
		{Package: "github.com/shiphold/shiphold/test/rbd", Test: "TestRBDRealBench", Reason: "set SHIPHOLD_BENCH=1"},
		{Package: "tj", Test: "TestC/sub", Reason: "x"},
		{Package: "github.com/shiphold/shiphold/test/cephfs", Test: "TestRBDRealBench", Reason: "other package"},
		{Package: "github.com/shiphold/shiphold/test/notrbd", Test: "TestRBDRealBench", Reason: "suffix is not a package"},
	}
	var out bytes.Buffer
	if Check(&out, skips, allowed, "allowed") {
		t.Errorf("Check passed with skips the list does not name:\n%s", out.String())
	}
	got := out.String()
	for _, s := range []string{
		"skipped tests: 4 (2 allowed by allowed, 2 not allowed)",
		"NOT ALLOWED: github.com/shiphold/shiphold/test/cephfs TestRBDRealBench: other package",
		"NOT ALLOWED: github.com/shiphold/shiphold/test/notrbd TestRBDRealBench",
		"allowed (allowed:3, opt-in benchmark (SHIPHOLD_BENCH=1)): github.com/shiphold/shiphold/test/rbd TestRBDRealBench",
	} {
		if !strings.Contains(got, s) {
			t.Errorf("Check output lacks %q:\n%s", s, got)
		}
	}
	out.Reset()
	if !Check(&out, skips[:2], allowed, "allowed") {
		t.Errorf("Check failed with only allowed skips:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "skipped tests: 2 (2 allowed by allowed, 0 not allowed)") {
		t.Errorf("count line: %s", out.String())
	}
}
