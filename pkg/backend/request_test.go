package backend

import (
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/volid"
)

func TestRequestRecordConflict(t *testing.T) {
	vol := volid.Volume{Backend: "b", Tenant: "t", Location: "1", Hash: volid.Hash("src")}
	snap := volid.Snapshot{Volume: vol, SnapHash: volid.Hash("snap")}
	other := volid.Snapshot{Volume: vol, SnapHash: volid.Hash("other")}
	first := func() *VolumeRequest {
		return &VolumeRequest{
			Name: "pvc-1", Tenant: "t", RequiredBytes: 1 << 30, LimitBytes: 2 << 30,
			Parameters: map[string]string{"pool": "fast", ParamPVCName: "claim-a"}, SourceSnapshot: &snap,
		}
	}
	rec := NewRequestRecord(first())
	legacy := rec
	legacy.Params = nil // written before parameters were recorded
	tests := []struct {
		name     string
		rec      RequestRecord
		capacity int64
		change   func(r *VolumeRequest)
		differs  string // "" for a retry
	}{
		{name: "same request", rec: rec, capacity: 1 << 30, change: func(*VolumeRequest) {}},
		{name: "other PVC name", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Parameters[ParamPVCName] = "claim-b" }},
		{name: "smaller required, volume in range", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.RequiredBytes = 1 << 20 }},
		{name: "no limit", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.LimitBytes = 0 }},
		{name: "larger required", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.RequiredBytes = 3 << 29 }, differs: "outside the requested range"},
		{name: "limit below the volume", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.RequiredBytes, r.LimitBytes = 1<<20, 1<<29 }, differs: "limit 536870912"},
		{name: "expanded volume, original range", rec: rec, capacity: 3 << 30, change: func(*VolumeRequest) {}, differs: "3221225472 bytes"},
		{name: "other parameter value", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Parameters["pool"] = "slow" }, differs: `parameter pool was "fast", this request has "slow"`},
		{name: "parameter added", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Parameters["features"] = "layering" }, differs: "parameter features was unset"},
		{name: "parameter set to empty", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Parameters["features"] = "" }, differs: `this request has ""`},
		{name: "other source", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.SourceSnapshot = &other }, differs: "content source is " + snap.String()},
		{name: "no source", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.SourceSnapshot = nil }, differs: "this request asks none"},
		{name: "block", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Block = true }, differs: "block=false"},
		{name: "hash collision", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Name = "pvc-2" }, differs: "hash collision"},
		{name: "other tenant", rec: rec, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Tenant = "u" }, differs: `tenant "t"`},
		{name: "legacy record, other parameters", rec: legacy, capacity: 1 << 30, change: func(r *VolumeRequest) { r.Parameters["pool"] = "slow" }},
		{name: "legacy record, other size", rec: legacy, capacity: 1 << 30, change: func(r *VolumeRequest) { r.RequiredBytes = 2 << 30 }, differs: "outside the requested range"},
		{name: "unlimited volume, required size", rec: rec, capacity: 0, change: func(*VolumeRequest) {}, differs: "0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := first()
			tt.change(req)
			err := tt.rec.Conflict(req, tt.capacity)
			if tt.differs == "" {
				if err != nil {
					t.Fatalf("a retry was refused: %v", err)
				}
				return
			}
			if CodeOf(err) != AlreadyExists || !strings.Contains(err.Error(), tt.differs) {
				t.Fatalf("want AlreadyExists naming %q, got %v (code %v)", tt.differs, err, CodeOf(err))
			}
		})
	}
}

func TestRequestRecordRoundTrip(t *testing.T) {
	req := &VolumeRequest{Name: "n", Tenant: "t", RequiredBytes: 5, Parameters: map[string]string{}}
	rec := NewRequestRecord(req)
	got, err := DecodeRequestRecord(rec.Encode())
	if err != nil {
		t.Fatal(err)
	}
	// Empty parameters stay recorded as such, so they are compared; only an old record has none.
	if got.Params == nil || got.Name != "n" || got.Tenant != "t" || got.RequiredBytes != 5 {
		t.Fatalf("round trip lost fields: %+v", got)
	}
	old, err := DecodeRequestRecord(`{"name":"n","backend":"b","requiredBytes":5}`)
	if err != nil || old.Params != nil || old.Name != "n" {
		t.Fatalf("old record: %+v, %v", old, err)
	}
}
