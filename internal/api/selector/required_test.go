package selector

import "testing"

// TestRequiredEqual: the equality a label index may use is one every
// match satisfies; selectors without one say so.
func TestRequiredEqual(t *testing.T) {
	for _, tc := range []struct {
		sel      string
		key, val string
		ok       bool
	}{
		{"app == 'web'", "app", "web", true},
		{"has(calico) && app == 'db'", "app", "db", true},
		{"env != 'prod' && (tier == 'a' || tier == 'b') && role == 'x'", "role", "x", true},
		{"app == 'web' || app == 'db'", "", "", false},
		{"!(app == 'web')", "", "", false},
		{"app != 'web'", "", "", false},
		{"app in {'web'}", "", "", false},
		{"all()", "", "", false},
		{"", "", "", false},
	} {
		s, err := Parse(tc.sel)
		if err != nil {
			t.Fatalf("%q: %v", tc.sel, err)
		}
		k, v, ok := s.RequiredEqual()
		if k != tc.key || v != tc.val || ok != tc.ok {
			t.Errorf("%q: RequiredEqual() = %q, %q, %v; want %q, %q, %v", tc.sel, k, v, ok, tc.key, tc.val, tc.ok)
		}
		if ok && s.Evaluate(map[string]string{k: v + "x", "calico": "", "env": "dev", "tier": "a", "role": "x", "app": "web"}) && k != "app" {
			t.Errorf("%q matches labels whose %s is not %q", tc.sel, k, v)
		}
	}
	var nilSel *Selector
	if _, _, ok := nilSel.RequiredEqual(); ok {
		t.Error("a nil selector reports an equality")
	}
}
