package migrate

import (
	"fmt"
	"sort"
)

// Policy says what to do with what the target cannot represent.
type Policy string

// Policies for Options.Unrepresentable.
const (
	// PolicyStop reports every problem before copying anything and stops (the default).
	PolicyStop Policy = "stop"
	// PolicySkip leaves each entry with a problem (and what is below it) out of the copy.
	PolicySkip Policy = "skip"
	// PolicyClamp stores the nearest value the target holds: times are clamped into its
	// range, an xattr too large for it is left out; names and devices have no nearest
	// value and are skipped.
	PolicyClamp Policy = "clamp"
)

// ParsePolicy reads a --unrepresentable value.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyStop, PolicySkip, PolicyClamp:
		return p, nil
	case "":
		return PolicyStop, nil
	}
	return "", fmt.Errorf("unrepresentable policy %q: use stop, skip or clamp", s)
}

// Problem is one thing of the source that the target cannot represent.
type Problem struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	// Action is what the run does about it: "stop", "skip" or "clamp".
	Action string `json:"action"`
}

// Problem kinds.
const (
	ProblemName   = "name-too-long"
	ProblemPath   = "path-too-long"
	ProblemTime   = "time-out-of-range"
	ProblemXattr  = "xattr-not-storable"
	ProblemDevice = "device-not-storable"
	ProblemSocket = "socket-not-storable"
)

// preflight checks every source entry against the target's limits. Under skip and clamp
// it also changes the tree to what will be copied: skipped entries (with their subtrees)
// are removed, clamped values replaced, so the copy and the verification agree.
func preflight(src *Tree, l Limits, policy Policy) []Problem {
	var probs []Problem
	skip := map[string]bool{}
	for _, p := range src.Sorted() {
		n := src.Nodes[p]
		if p != "" && skip[Dir(p)] {
			skip[p] = true
			continue
		}
		for _, pr := range check(n, l) {
			pr.Action = string(policy)
			if policy == PolicyClamp && !clampable(pr.Kind) {
				pr.Action = string(PolicySkip)
			}
			switch {
			case policy == PolicyStop:
			case pr.Action == string(PolicySkip):
				skip[p] = true
			default:
				clamp(n, l, pr.Kind)
			}
			probs = append(probs, pr)
		}
	}
	for p := range skip {
		if p != "" {
			delete(src.Nodes, p)
		}
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Path < probs[j].Path })
	return probs
}

func clampable(kind string) bool { return kind == ProblemTime || kind == ProblemXattr }

// check lists the problems of one entry.
func check(n *Node, l Limits) []Problem {
	var out []Problem
	add := func(kind, format string, args ...any) {
		out = append(out, Problem{Path: n.Path, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	if name := Base(n.Path); l.NameMax > 0 && len(name) > l.NameMax {
		add(ProblemName, "name is %d bytes; %s holds at most %d", len(name), l.Name, l.NameMax)
	}
	if l.PathMax > 0 && len(n.Path) > l.PathMax {
		add(ProblemPath, "path is %d bytes; %s holds at most %d", len(n.Path), l.Name, l.PathMax)
	}
	for _, t := range []struct {
		what string
		ts   Timespec
	}{{"mtime", n.Attr.Mtime}, {"atime", n.Attr.Atime}} {
		if t.ts.Sec < l.MinTime || t.ts.Sec > l.MaxTime {
			add(ProblemTime, "%s %s is outside what %s stores (%d..%d seconds since 1970)", t.what, t.ts, l.Name, l.MinTime, l.MaxTime)
		} else if l.TimeGranularity > 1 && t.ts.Nsec%l.TimeGranularity != 0 {
			add(ProblemTime, "%s %s is finer than what %s stores (%d ns steps)", t.what, t.ts, l.Name, l.TimeGranularity)
		}
	}
	if len(n.Xattrs) > 0 {
		checkXattrs(n, l, add)
	}
	switch {
	case (n.Attr.Type == TypeChar || n.Attr.Type == TypeBlock) && (DevMajor(n.Attr.Rdev) > l.DevMajorMax || DevMinor(n.Attr.Rdev) > l.DevMinorMax):
		add(ProblemDevice, "device %d:%d is beyond what %s can create (major at most %d, minor at most %d)",
			DevMajor(n.Attr.Rdev), DevMinor(n.Attr.Rdev), l.Name, l.DevMajorMax, l.DevMinorMax)
	case n.Attr.Type == TypeSocket && !l.Sockets:
		add(ProblemSocket, "%s cannot create sockets", l.Name)
	}
	return out
}

func checkXattrs(n *Node, l Limits, add func(kind, format string, args ...any)) {
	if !l.Xattrs {
		add(ProblemXattr, "%d extended attributes; %s stores none", len(n.Xattrs), l.Name)
		return
	}
	total := 0
	for k, v := range n.Xattrs {
		total += len(k) + len(v)
		if l.XattrValueMax > 0 && len(v) > l.XattrValueMax {
			add(ProblemXattr, "xattr %q is %d bytes; %s holds at most %d", k, len(v), l.Name, l.XattrValueMax)
		}
	}
	if l.XattrTotalMax > 0 && total > l.XattrTotalMax {
		add(ProblemXattr, "xattrs total %d bytes; %s holds at most %d per entry", total, l.Name, l.XattrTotalMax)
	}
}

// clamp replaces an unrepresentable value by the nearest one the target stores.
func clamp(n *Node, l Limits, kind string) {
	switch kind {
	case ProblemTime:
		ts := [2]Timespec{n.Attr.Atime, n.Attr.Mtime}
		for i, t := range ts {
			switch {
			case t.Sec < l.MinTime:
				ts[i] = Timespec{Sec: l.MinTime}
			case t.Sec > l.MaxTime:
				ts[i] = Timespec{Sec: l.MaxTime, Nsec: 999_999_999}
			}
			if g := l.TimeGranularity; g > 1 {
				ts[i].Nsec -= ts[i].Nsec % g
			}
		}
		n.Clamped = &ts
	case ProblemXattr:
		if !l.Xattrs {
			n.Xattrs = nil
			return
		}
		for k, v := range n.Xattrs {
			if l.XattrValueMax > 0 && len(v) > l.XattrValueMax {
				delete(n.Xattrs, k)
			}
		}
		for total := xattrBytes(n.Xattrs); l.XattrTotalMax > 0 && total > l.XattrTotalMax; total = xattrBytes(n.Xattrs) {
			delete(n.Xattrs, largestXattr(n.Xattrs))
		}
	}
}

func xattrBytes(x map[string][]byte) int {
	t := 0
	for k, v := range x {
		t += len(k) + len(v)
	}
	return t
}

func largestXattr(x map[string][]byte) string {
	best, size := "", -1
	for k, v := range x {
		if len(v) > size || (len(v) == size && k < best) {
			best, size = k, len(v)
		}
	}
	return best
}
