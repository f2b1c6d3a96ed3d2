package backend

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// RequestRecord is what a CreateVolume asked for. Every backend keeps it with the volume
// (RBD image metadata, CephFS subvolume metadata, a OneFS directory attribute), so that a
// retry is recognised and a different request under the same name refused, by one rule
// (Conflict) on every backend. Secrets are never recorded.
type RequestRecord struct {
	Name          string `json:"name"`
	Tenant        string `json:"tenant,omitempty"`
	RequiredBytes int64  `json:"requiredBytes"`
	LimitBytes    int64  `json:"limitBytes,omitempty"`
	Block         bool   `json:"block,omitempty"`
	// Params are the StorageClass parameters without the PVC metadata. A record written
	// before they were recorded has nil Params, and its parameters are not compared.
	Params map[string]string `json:"params"`
	// Source is the snapshot or volume ID the volume was made from, "" for an empty one.
	Source string `json:"source,omitempty"`
}

// NewRequestRecord records req.
func NewRequestRecord(req *VolumeRequest) RequestRecord {
	return RequestRecord{
		Name: req.Name, Tenant: req.Tenant, RequiredBytes: req.RequiredBytes, LimitBytes: req.LimitBytes,
		Block: req.Block, Params: RecordedParams(req.Parameters), Source: req.SourceID(),
	}
}

// SourceID is the content source's ID as a string, "" without one.
func (r *VolumeRequest) SourceID() string {
	switch {
	case r.SourceSnapshot != nil:
		return r.SourceSnapshot.String()
	case r.SourceVolume != nil:
		return r.SourceVolume.String()
	}
	return ""
}

// RecordedParams drops the parameters that describe the PVC rather than the volume: the
// same volume may be asked for again by a PVC of another name.
func RecordedParams(p map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range p {
		if k == ParamPVCName || k == ParamPVCNamespace || k == ParamPVName {
			continue
		}
		out[k] = v
	}
	return out
}

// Encode is the record as stored.
func (r RequestRecord) Encode() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// DecodeRequestRecord reads a stored record.
func DecodeRequestRecord(s string) (RequestRecord, error) {
	var r RequestRecord
	err := json.Unmarshal([]byte(s), &r)
	return r, err
}

// Conflict is the one rule, for every backend, that decides whether req is a retry of the
// request r records, whose volume now holds capacity bytes (0: unknown or unlimited). As the
// CSI spec has it, a retry has the same name, a capacity_range the volume satisfies, the
// same parameters and the same content source; it returns nil then, and otherwise an
// AlreadyExists error naming every difference.
func (r RequestRecord) Conflict(req *VolumeRequest, capacity int64) error {
	var diffs []string
	if r.Name != req.Name {
		diffs = append(diffs, fmt.Sprintf("it was created for request %q (hash collision)", r.Name))
	}
	if r.Tenant != "" && r.Tenant != req.Tenant {
		diffs = append(diffs, fmt.Sprintf("it belongs to tenant %q, this request to %q", r.Tenant, req.Tenant))
	}
	if capacity < req.RequiredBytes || (req.LimitBytes > 0 && capacity > req.LimitBytes) {
		diffs = append(diffs, fmt.Sprintf("it has %d bytes, outside the requested range (required %d, limit %s)", capacity, req.RequiredBytes, limitText(req.LimitBytes)))
	}
	if r.Block != req.Block {
		diffs = append(diffs, fmt.Sprintf("it was created with block=%t, this request asks block=%t", r.Block, req.Block))
	}
	if src := req.SourceID(); r.Source != src {
		diffs = append(diffs, fmt.Sprintf("its content source is %s, this request asks %s", sourceText(r.Source), sourceText(src)))
	}
	if r.Params != nil {
		diffs = append(diffs, paramDiffs(r.Params, RecordedParams(req.Parameters))...)
	}
	if len(diffs) == 0 {
		return nil
	}
	return Errorf(AlreadyExists, "volume %q already exists and does not match this request: %s; delete it or use another name", req.Name, strings.Join(diffs, "; "))
}

// paramDiffs names each parameter whose value differs, sorted by key.
func paramDiffs(had, want map[string]string) []string {
	keys := map[string]bool{}
	for k := range had {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		h, hok := had[k]
		w, wok := want[k]
		if h != w || hok != wok {
			out = append(out, fmt.Sprintf("parameter %s was %s, this request has %s", k, paramText(h, hok), paramText(w, wok)))
		}
	}
	sort.Strings(out)
	return out
}

func paramText(v string, ok bool) string {
	if !ok {
		return "unset"
	}
	return fmt.Sprintf("%q", v)
}

func sourceText(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func limitText(n int64) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(n)
}
