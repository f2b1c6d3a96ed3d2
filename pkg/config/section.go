package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Section is a backend kind's own section of a backend entry (rbd: for kind rbd): a
// struct the kind's package defines, decoded strictly from the section by its JSON tags.
type Section interface {
	// Validate names the first field to fix, as section.field ("rbd.pool is required").
	Validate() error
}

// NodeAddressed is a section whose storage lists the nodes it serves by address (an NFS
// export's client list): NodeAddress is the address this node's traffic to that storage
// comes from, "" when the section names no server to reach. The node plugin advertises the
// first one it finds (--node-address overrides).
type NodeAddressed interface {
	NodeAddress() (string, error)
}

// Sections give, by kind name (which is also the key of the kind's section), a new empty
// section of the kind to decode into. pkg/backend/registry lists those of the kinds the
// driver serves, so this package knows no kind.
type Sections map[string]func() Section

// SectionAs is b's section as the type S of its kind's package (*rbd.Config, say), or an
// error saying the backend has none of that type.
func SectionAs[S Section](b *Backend) (S, error) {
	var zero S
	if b == nil {
		return zero, fmt.Errorf("no backend config")
	}
	s, ok := b.Section.(S)
	if !ok {
		return zero, fmt.Errorf("backend %q: kind %s needs its %s section, the config has %T", b.Name, b.Kind, b.Kind, b.Section)
	}
	return s, nil
}

// decode fills b from one entry of backends: name, kind and topology, and the section
// named by the kind, which must be the entry's only section.
func (b *Backend) decode(entry map[string]json.RawMessage, sections Sections) error {
	common := map[string]json.RawMessage{}
	var found []string
	for key, raw := range entry {
		if _, isKind := sections[key]; isKind {
			found = append(found, key)
			continue
		}
		common[key] = raw
	}
	var fields struct {
		Name     string    `json:"name"`
		Kind     string    `json:"kind"`
		Topology *Topology `json:"topology,omitempty"`
	}
	data, err := json.Marshal(common)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, &fields); err != nil {
		return fmt.Errorf("%w (a backend has name, kind, topology and the section of its kind: %s)", err, kindList(sections))
	}
	b.Name, b.Kind, b.Topology = fields.Name, fields.Kind, fields.Topology
	newSection, ok := sections[b.Kind]
	switch {
	case b.Kind == "":
		return fmt.Errorf("kind is required (%s)", kindList(sections))
	case !ok:
		return fmt.Errorf("unknown kind %q (want %s)", b.Kind, kindList(sections))
	}
	sort.Strings(found)
	for _, k := range found {
		if k != b.Kind {
			return fmt.Errorf("has a %s section but is of kind %s: a backend has exactly one section, the one its kind names (%s:)", k, b.Kind, b.Kind)
		}
	}
	raw := entry[b.Kind]
	if len(raw) == 0 || string(raw) == "null" {
		return fmt.Errorf("kind %s needs a %s section", b.Kind, b.Kind)
	}
	s := newSection()
	if err := yaml.UnmarshalStrict(raw, s); err != nil {
		return fmt.Errorf("%s: %w", b.Kind, err)
	}
	b.Section = s
	return nil
}

// kindList is "cephfs, isilon or rbd".
func kindList(sections Sections) string {
	names := make([]string, 0, len(sections))
	for k := range sections {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// MarshalJSON writes b as the config file has it: the section under its kind's name.
func (b Backend) MarshalJSON() ([]byte, error) {
	entry := map[string]any{"name": b.Name, "kind": b.Kind}
	if b.Section != nil {
		entry[b.Kind] = b.Section
	}
	if b.Topology != nil {
		entry["topology"] = b.Topology
	}
	return json.Marshal(entry)
}

// UnmarshalJSON refuses: only Parse knows the type of a kind's section.
func (b *Backend) UnmarshalJSON([]byte) error {
	return fmt.Errorf("config: a backend decodes only through config.Parse, which is given the kinds' sections")
}
