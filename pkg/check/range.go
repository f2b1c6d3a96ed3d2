package check

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Range is a Nagios threshold range ([@]start:end, "~" for minus infinity, a bare number
// N for 0:N). A value outside it alerts; with "@" a value inside it alerts.
// Numbers may carry a byte unit (Ki Mi Gi Ti Pi, or k M G T P in powers of 1000) or "%".
type Range struct {
	Start, End float64
	Inside     bool
	text       string
}

var byteUnits = []struct {
	suffix string
	factor float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15},
	{"%", 1}, {"B", 1},
}

// ParseRange reads a threshold; "" is no threshold (nil).
func ParseRange(s string) (*Range, error) {
	if s == "" {
		return nil, nil
	}
	r := &Range{text: s, End: math.Inf(1)}
	body := s
	if strings.HasPrefix(body, "@") {
		r.Inside, body = true, body[1:]
	}
	start, end, hasColon := strings.Cut(body, ":")
	if !hasColon {
		start, end = "0", body
	}
	var err error
	switch start {
	case "~":
		r.Start = math.Inf(-1)
	case "":
		r.Start = 0
	default:
		if r.Start, err = number(start); err != nil {
			return nil, fmt.Errorf("threshold %q: %v", s, err)
		}
	}
	if end != "" {
		if r.End, err = number(end); err != nil {
			return nil, fmt.Errorf("threshold %q: %v", s, err)
		}
	}
	if r.Start > r.End {
		return nil, fmt.Errorf("threshold %q: start %g is above end %g", s, r.Start, r.End)
	}
	return r, nil
}

func number(s string) (float64, error) {
	factor := 1.0
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok && rest != "" {
			s, factor = rest, u.factor
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a number (units: Ki Mi Gi Ti Pi, k M G T P, %%)", s)
	}
	return v * factor, nil
}

// Alerts reports whether v passes this threshold; a nil Range never alerts.
func (r *Range) Alerts(v float64) bool {
	if r == nil {
		return false
	}
	in := v >= r.Start && v <= r.End
	return in == r.Inside
}

// Perf is the range as performance data writes it: plain numbers in the value's unit.
func (r *Range) Perf() string {
	if r == nil {
		return ""
	}
	out := ""
	if r.Inside {
		out = "@"
	}
	switch {
	case math.IsInf(r.Start, -1):
		out += "~:"
	case r.Start != 0 || math.IsInf(r.End, 1):
		out += perfNumber(r.Start) + ":"
	}
	if !math.IsInf(r.End, 1) {
		out += perfNumber(r.End)
	}
	return out
}

// String is the threshold as the admin wrote it.
func (r *Range) String() string {
	if r == nil {
		return ""
	}
	return r.text
}

func perfNumber(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
