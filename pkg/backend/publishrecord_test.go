package backend

import "testing"

func TestNewPublishRecord(t *testing.T) {
	n1, n2 := Node{Name: "n1"}, Node{Name: "n2"}
	meta := map[string]string{}
	key, mode, err := NewPublishRecord("v", n1, PublishAccess{SingleNode: true}, meta)
	if err != nil || key != PublishRecordKey(n1) || mode != "rw" {
		t.Fatalf("first publish: %q %q %v", key, mode, err)
	}
	meta[key] = mode
	if key, mode, err := NewPublishRecord("v", n1, PublishAccess{SingleNode: true}, meta); err != nil || key != "" || mode != "" {
		t.Fatalf("retry: %q %q %v, want nothing to record", key, mode, err)
	}
	if _, _, err := NewPublishRecord("v", n1, PublishAccess{ReadOnly: true}, meta); CodeOf(err) != AlreadyExists {
		t.Fatalf("read-only republish: %v, want AlreadyExists", err)
	}
	if _, _, err := NewPublishRecord("v", n2, PublishAccess{SingleNode: true}, meta); CodeOf(err) != FailedPrecondition {
		t.Fatalf("single-node publish on a second node: %v, want FailedPrecondition", err)
	}
	if key, mode, err := NewPublishRecord("v", n2, PublishAccess{ReadOnly: true}, meta); err != nil || key != PublishRecordKey(n2) || mode != "ro" {
		t.Fatalf("multi-node read-only publish on n2: %q %q %v", key, mode, err)
	}
}
