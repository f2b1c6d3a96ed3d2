package backend

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
)

func TestLongWait(t *testing.T) {
	testCases := []struct {
		name    string
		err     error
		wantEnd string
	}{
		{"done", nil, "Wait over"},
		{"pending", Errorf(Pending, "clone in progress"), "Still waiting; the request answers Pending and its retry waits on"},
		{"failed", errors.New("rbd: flatten: I/O error"), "Wait failed"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var lines []map[string]any
			logger := funcr.NewJSON(func(obj string) { lines = append(lines, parse(t, obj)) }, funcr.Options{})
			ctx := klog.NewContext(context.Background(), logger.WithValues("request_id", "r1"))
			LongWait(ctx, "flatten", "image", "csi-vol-1")(tc.err)
			if len(lines) != 2 || lines[0]["msg"] != "Waiting" || lines[1]["msg"] != tc.wantEnd {
				t.Fatalf("lines %v", lines)
			}
			for _, l := range lines {
				if l["request_id"] != "r1" || l["wait"] != "flatten" || l["image"] != "csi-vol-1" {
					t.Errorf("line lacks the request's or the wait's fields: %v", l)
				}
			}
			if lines[1]["waited"] == nil {
				t.Errorf("end line has no waited: %v", lines[1])
			}
		})
	}
}

func parse(t *testing.T, obj string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		t.Fatalf("not JSON: %s", obj)
	}
	return m
}
