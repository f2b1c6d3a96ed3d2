// Package testreport reads `go test -json` streams for make test: it prints them as go test
// would (every output line, or only what failed or skipped), and checks the skipped tests
// against the allow-list, so that a run which passes by skipping is told apart from one
// which passes.
package testreport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), with the build events of go 1.24+.
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
}

// Skip is a test that skipped, with the message it gave.
type Skip struct {
	Package, Test, Reason string
}

func (s Skip) String() string { return s.Package + " " + s.Test + ": " + s.Reason }

// Result is what a stream held.
type Result struct {
	Skips    []Skip
	Failures int // failed tests and packages, builds included
}

// Render copies a `go test -json` stream from r to raw unchanged and prints it to out: every
// output line when verbose, else what plain `go test` prints (package lines, failed tests
// with their logs) plus each skipped test with its reason.
func Render(r io.Reader, raw, out io.Writer, verbose bool) (Result, error) {
	var res Result
	held := map[string][]string{} // package + test -> output lines until the test ends
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if raw != nil {
			fmt.Fprintf(raw, "%s\n", line)
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintf(out, "%s\n", line) // not an event: go's own messages
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch {
		case e.Action == "build-output":
			fmt.Fprint(out, e.Output)
		case e.Action == "build-fail":
			res.Failures++
		case e.Action == "output" && verbose:
			fmt.Fprint(out, e.Output)
			if e.Test != "" {
				held[key] = append(held[key], e.Output)
			}
		case e.Action == "output" && e.Test == "":
			if strings.TrimSpace(e.Output) != "PASS" {
				fmt.Fprint(out, e.Output)
			}
		case e.Action == "output":
			held[key] = append(held[key], e.Output)
		case e.Test == "":
			if e.Action == "fail" {
				res.Failures++
			}
		case e.Action == "skip":
			res.Skips = append(res.Skips, Skip{Package: e.Package, Test: e.Test, Reason: skipReason(held[key])})
			if !verbose {
				printHeld(out, held[key])
			}
			delete(held, key)
		case e.Action == "fail":
			res.Failures++
			if !verbose {
				printHeld(out, held[key])
			}
			delete(held, key)
		case e.Action == "pass":
			delete(held, key)
		}
	}
	return res, sc.Err()
}

// printHeld prints a test's output as plain go test does: its "--- FAIL/SKIP" line first,
// then its log, without the === RUN/PAUSE/CONT markers of -json.
func printHeld(out io.Writer, lines []string) {
	var log []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "=== "):
		case strings.HasPrefix(strings.TrimSpace(l), "--- "):
			fmt.Fprint(out, l)
		default:
			log = append(log, l)
		}
	}
	for _, l := range log {
		fmt.Fprint(out, l)
	}
}

var logHeader = regexp.MustCompile(`^\s+\S+\.go:\d+: `)

// skipReason is the last message the test logged before it skipped (t.Skip's, normally),
// continuation lines included.
func skipReason(lines []string) string {
	var msg []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "=== "), strings.HasPrefix(strings.TrimSpace(l), "--- SKIP"):
		case logHeader.MatchString(l):
			msg = []string{strings.TrimSpace(logHeader.ReplaceAllString(l, ""))}
		case len(msg) > 0:
			msg = append(msg, strings.TrimSpace(l))
		}
	}
	if len(msg) == 0 {
		return "(no message)"
	}
	return strings.Join(msg, " ")
}

// ReadSkips reads the skipped tests of a saved `go test -json` stream.
func ReadSkips(file string) ([]Skip, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := Render(f, nil, io.Discard, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return res.Skips, nil
}

// Allowed is one entry of the allow-list: tests that may skip, and why.
type Allowed struct {
	Package string // module-relative ("test/rbd") or full import path
	Test    string // a test name, or a path.Match pattern of names
	Reason  string
	Line    int
}

// ReadAllowList parses the allow-list: one "<package> <test> <reason>" a line, # comments;
// an entry without a reason is an error.
func ReadAllowList(file string) ([]Allowed, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var list []Allowed
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 {
			return nil, fmt.Errorf("%s:%d: want \"<package> <test> <reason>\", got %q", file, i+1, l)
		}
		if _, err := path.Match(f[1], ""); err != nil {
			return nil, fmt.Errorf("%s:%d: test pattern %q: %v", file, i+1, f[1], err)
		}
		list = append(list, Allowed{Package: f[0], Test: f[1], Reason: strings.Join(f[2:], " "), Line: i + 1})
	}
	return list, nil
}

// match finds the entry that allows s, or nil.
func match(list []Allowed, s Skip) *Allowed {
	for i, a := range list {
		if s.Package != a.Package && !strings.HasSuffix(s.Package, "/"+a.Package) {
			continue
		}
		if ok, _ := path.Match(a.Test, s.Test); ok {
			return &list[i]
		}
	}
	return nil
}

// Check sorts skips into those the list allows and those it does not, and prints the count
// and every skip with its reason. It reports whether every skip was allowed.
func Check(out io.Writer, skips []Skip, list []Allowed, listName string) bool {
	skips = append([]Skip(nil), skips...)
	sort.Slice(skips, func(i, j int) bool { return skips[i].String() < skips[j].String() })
	var allowed, refused []string
	for _, s := range skips {
		if a := match(list, s); a != nil {
			allowed = append(allowed, fmt.Sprintf("  allowed (%s:%d, %s): %s", listName, a.Line, a.Reason, s))
		} else {
			refused = append(refused, "  NOT ALLOWED: "+s.String())
		}
	}
	fmt.Fprintf(out, "skipped tests: %d (%d allowed by %s, %d not allowed)\n", len(skips), len(allowed), listName, len(refused))
	for _, l := range append(refused, allowed...) {
		fmt.Fprintln(out, l)
	}
	if len(refused) > 0 {
		fmt.Fprintf(out, "a test that skips under make test hides a missing prerequisite: make it available, "+
			"or gate the test with harness.Require, or list it in %s with its reason\n", listName)
	}
	return len(refused) == 0
}
