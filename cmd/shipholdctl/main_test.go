package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := map[string]int64{"1Gi": 1 << 30, "512Mi": 512 << 20, "10G": 10e9, "4096": 4096}
	for in, want := range cases {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Fatalf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Gi", "-1Gi", "1.5Gi", "ten"} {
		if _, err := parseSize(bad); err == nil {
			t.Fatalf("parseSize(%q) accepted", bad)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"nope"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "nope"`) {
		t.Fatalf("unknown command: code %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"csi", "--endpoint", "unix:///nonexistent.sock", "create-volume", "--name", "x"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "needs --backend") {
		t.Fatalf("missing flag: code %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"csi", "--endpoint", "unix:///nonexistent.sock", "frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("unknown csi command: code %d", code)
	}
}
