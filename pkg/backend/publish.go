package backend

import (
	"sort"
	"strings"
)

// Backends without storage-side access control (Ceph) still record, on the volume itself,
// which nodes the controller published it to and how. That record makes a republish in the
// other mode ALREADY_EXISTS, as the spec asks, and shows an admin where a volume is attached.

// PublishRecordPrefix starts the key of each node's publish record.
const PublishRecordPrefix = "shiphold.node."

// PublishRecordKey is the key of node's publish record.
func PublishRecordKey(node Node) string { return PublishRecordPrefix + node.Name }

// PublishMode is the value of a publish record.
func PublishMode(readOnly bool) string {
	if readOnly {
		return "ro"
	}
	return "rw"
}

// CheckRepublish says whether a node already published with mode recorded may be published
// again read-only or not: the same mode is an idempotent retry, the other one a conflict.
func CheckRepublish(volume string, node Node, recorded string, readOnly bool) error {
	if recorded == "" || recorded == PublishMode(readOnly) {
		return nil
	}
	return Errorf(AlreadyExists, "volume %s is already published to node %s %s; unpublish it before publishing it %s",
		volume, node.Name, modeName(recorded), modeName(PublishMode(readOnly)))
}

// IsPublishRecordKey reports whether a metadata key is a publish record.
func IsPublishRecordKey(key string) bool { return strings.HasPrefix(key, PublishRecordPrefix) }

func modeName(mode string) string {
	if mode == "ro" {
		return "read-only"
	}
	return "read-write"
}

// CheckSingleNode refuses to publish a single-node volume to node while it is published to
// others (their node names or addresses), as CSI asks: FAILED_PRECONDITION until the CO
// unpublishes it there. A multi-node volume may be on any number of nodes.
func CheckSingleNode(volume string, node Node, access PublishAccess, others []string) error {
	if !access.SingleNode || len(others) == 0 {
		return nil
	}
	others = append([]string(nil), others...)
	sort.Strings(others)
	return Errorf(FailedPrecondition, "volume %s has a single-node access mode and is published to %s; it can be published to node %s once it is unpublished there (the pod using it is gone or the node is detached)",
		volume, strings.Join(others, ", "), node.Name)
}

// PublishedNodes lists the nodes recorded in a volume's metadata, except node itself.
func PublishedNodes(meta map[string]string, except Node) []string {
	var out []string
	for k := range meta {
		if name, ok := strings.CutPrefix(k, PublishRecordPrefix); ok && name != except.Name {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// SecretPublishContextKeys are publish context keys whose values are secrets (a tenant's
// cephx key): logs show them stripped.
var SecretPublishContextKeys = []string{"shiphold.io/ceph-key"}

// NewPublishRecord applies the publish rules to a volume's records meta for node: the key
// and mode to record, both "" when node's record is there already in that mode (an
// idempotent retry), or the conflict (CheckRepublish, CheckSingleNode).
func NewPublishRecord(volume string, node Node, access PublishAccess, meta map[string]string) (key, mode string, err error) {
	key = PublishRecordKey(node)
	recorded := meta[key]
	if err := CheckRepublish(volume, node, recorded, access.ReadOnly); err != nil || recorded != "" {
		return "", "", err
	}
	if err := CheckSingleNode(volume, node, access, PublishedNodes(meta, node)); err != nil {
		return "", "", err
	}
	return key, PublishMode(access.ReadOnly), nil
}
