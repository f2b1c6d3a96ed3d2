package backend

import (
	"reflect"
	"testing"
)

func TestCheckSingleNode(t *testing.T) {
	node := Node{Name: "node-b", Address: "10.0.0.2"}
	cases := []struct {
		name   string
		access PublishAccess
		others []string
		code   Code
	}{
		{"single-node, nobody else", PublishAccess{SingleNode: true}, nil, -1},
		{"single-node, held elsewhere", PublishAccess{SingleNode: true}, []string{"node-a"}, FailedPrecondition},
		{"single-node reader, held elsewhere", PublishAccess{SingleNode: true, ReadOnly: true}, []string{"node-a"}, FailedPrecondition},
		{"multi-node, held elsewhere", PublishAccess{}, []string{"node-a", "node-c"}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckSingleNode("v1:x", node, c.access, c.others)
			if c.code < 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if CodeOf(err) != c.code {
				t.Fatalf("%v, want %v", err, c.code)
			}
		})
	}
}

func TestPublishedNodes(t *testing.T) {
	meta := map[string]string{"shiphold.node.node-a": "rw", "shiphold.node.node-b": "ro", "shiphold.request": "{}"}
	if got := PublishedNodes(meta, Node{Name: "node-b"}); !reflect.DeepEqual(got, []string{"node-a"}) {
		t.Fatalf("PublishedNodes = %v", got)
	}
}
