// Package check is shiphold's Nagios/Icinga plugin logic: each check looks at the storage
// through the backends' controllers and returns one Result, which prints as the single
// status line with performance data that the monitoring plugin API defines.
package check

import (
	"fmt"
	"io"
	"strings"
)

// Status is a plugin state; its value is the plugin's exit code.
type Status int

// The monitoring plugin API's states, in order of severity except Unknown.
const (
	OK       Status = 0
	Warning  Status = 1
	Critical Status = 2
	Unknown  Status = 3
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// worse is the more serious of two states: CRITICAL > WARNING > UNKNOWN > OK, so a known
// problem is never hidden behind an unknown one.
func worse(a, b Status) Status {
	rank := map[Status]int{OK: 0, Unknown: 1, Warning: 2, Critical: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Thresholds are the -w and -c ranges of a check; nil never alerts.
type Thresholds struct {
	Warn, Crit *Range
}

// Of is the state of value v against the thresholds.
func (t Thresholds) Of(v float64) Status {
	switch {
	case t.Crit.Alerts(v):
		return Critical
	case t.Warn.Alerts(v):
		return Warning
	}
	return OK
}

// Perf is one performance data item: 'label'=value[UOM];[warn];[crit];[min];[max].
type Perf struct {
	Label string
	Value float64
	// UOM is "", "s", "%", "B" or "c", as the plugin API defines them.
	UOM        string
	Warn, Crit *Range
	Min, Max   *float64
}

func (p Perf) String() string {
	label := strings.ReplaceAll(p.Label, "'", "")
	opt := func(v *float64) string {
		if v == nil {
			return ""
		}
		return perfNumber(*v)
	}
	s := fmt.Sprintf("'%s'=%s%s;%s;%s;%s;%s", label, perfNumber(p.Value), p.UOM, p.Warn.Perf(), p.Crit.Perf(), opt(p.Min), opt(p.Max))
	return strings.TrimRight(s, ";")
}

// Result is the outcome of one check.
type Result struct {
	Status  Status
	Summary string
	Perf    []Perf
}

// Unknownf is an UNKNOWN result: the check could not tell.
func Unknownf(format string, args ...any) Result {
	return Result{Status: Unknown, Summary: fmt.Sprintf(format, args...)}
}

// Write prints the result as the one line the plugin API reads ("SHIPHOLD BACKENDS OK -
// text | perf") and returns the exit code.
func (r Result) Write(w io.Writer, name string) int {
	line := fmt.Sprintf("SHIPHOLD %s %s - %s", strings.ToUpper(name), r.Status, oneLine(r.Summary))
	if len(r.Perf) > 0 {
		items := make([]string, len(r.Perf))
		for i, p := range r.Perf {
			items[i] = p.String()
		}
		line += " | " + strings.Join(items, " ")
	}
	fmt.Fprintln(w, line)
	return int(r.Status)
}

// oneLine keeps free text from breaking the plugin format: no newline, no '|' (it starts
// the performance data).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", "/")
}

func ptr(v float64) *float64 { return &v }
