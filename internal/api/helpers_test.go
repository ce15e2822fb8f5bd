package api

import (
	"errors"
	"strings"
	"testing"
)

// manifest builds a one-resource YAML manifest; meta and spec are YAML
// flow mappings such as "{name: x}".
func manifest(kind, meta, spec string) string {
	return "apiVersion: tabby.dev/v1\nkind: " + kind + "\nmetadata: " + meta + "\nspec: " + spec + "\n"
}

// validateCase is one Validate table entry: a manifest, and either no
// problem (field == "") or a problem at field whose detail contains detail.
type validateCase struct {
	name     string
	doc      string
	field    string
	detail   string
	selector bool // rejected by the selector parser (not by Validate's own checks)
}

func runValidateCases(t *testing.T, cases []validateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := DecodeNoValidate([]byte(tc.doc))
			if err != nil {
				t.Fatalf("DecodeNoValidate() error = %v; want none (bad test manifest)", err)
			}
			if len(rs) != 1 {
				t.Fatalf("DecodeNoValidate() gave %d resources; want 1", len(rs))
			}
			SetDefaults(rs[0])
			checkProblem(t, Validate(rs[0]), tc.field, tc.detail)
		})
	}
}

// checkProblem checks that err is nil when field is "", and otherwise
// that it is FieldErrors holding a problem at field mentioning detail.
func checkProblem(t *testing.T, err error, field, detail string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Errorf("error = %v; want none", err)
		}
		return
	}
	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("error = %v; want FieldErrors with %s: …%s…", err, field, detail)
	}
	for _, fe := range fes {
		if fe.Field == field && strings.Contains(fe.Detail, detail) {
			return
		}
	}
	t.Errorf("error = %v; want a problem at %s containing %q", err, field, detail)
}
