// Package configtest holds the table checks every backend kind's package runs on its
// section of the config file.
package configtest

import (
	"strings"
	"testing"

	"github.com/shiphold/shiphold/pkg/config"
)

// Reject is a section's extra fields and the error that parsing them must mention.
type Reject struct{ Name, Fields, Want string }

// Rejects parses doc, with %s replaced by each case's fields, and fails t unless the
// error mentions the case's Want.
func Rejects(t *testing.T, sections config.Sections, doc string, cases []Reject) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			_, err := config.Parse([]byte(strings.Replace(doc, "%s", tc.Fields, 1)), sections)
			if err == nil || !strings.Contains(err.Error(), tc.Want) {
				t.Fatalf("Parse = %v, want mention of %q", err, tc.Want)
			}
		})
	}
}

// Validation is a section and the exact error its Validate gives ("" for none).
type Validation struct {
	Name    string
	Section config.Section
	Want    string
}

// Validates fails t unless each section's Validate gives exactly its Want.
func Validates(t *testing.T, cases []Validation) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			err := tc.Section.Validate()
			if tc.Want == "" && err != nil || tc.Want != "" && (err == nil || err.Error() != tc.Want) {
				t.Fatalf("Validate = %v, want %q", err, tc.Want)
			}
		})
	}
}

// Decode parses doc, whose first backend is of the kind whose section type is S, and
// returns that section; it fails t on any error.
func Decode[S config.Section](t *testing.T, sections config.Sections, doc string) S {
	t.Helper()
	c, err := config.Parse([]byte(doc), sections)
	if err != nil {
		t.Fatal(err)
	}
	s, err := config.SectionAs[S](&c.Backends[0])
	if err != nil {
		t.Fatal(err)
	}
	return s
}
