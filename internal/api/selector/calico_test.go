package selector

import "testing"

// The tables in this file restate the cases of Calico's own parser and
// tokenizer tests (libcalico-go/lib/selector/{parser,tokenizer}/*_test.go),
// so that Tabby accepts, rejects and canonicalises the same selectors.

type labels = map[string]string

var calicoMatchTests = []struct {
	sel        string
	matches    []labels
	nonMatches []labels
}{
	{`a == "b"`, []labels{{"a": "b"}, {"a": "b", "c": "d"}}, []labels{{}, {"a": "c"}, {"c": "d"}}},
	{`a == "b" && c == "d"`, []labels{{"a": "b", "c": "d"}},
		[]labels{{}, {"a": "b", "c": "e"}, {"a": "c", "c": "d"}, {"c": "d"}, {"a": "b"}}},
	{`a == "b" || c == "d"`, []labels{{"a": "b", "c": "d"}, {"a": "b"}, {"c": "d"}},
		[]labels{{}, {"a": "e", "c": "e"}, {"c": "e"}, {"a": "e"}}},
	{`a in {"'", '"', "c"}`, []labels{{"a": "c"}, {"a": `"`}, {"a": `'`}}, []labels{{}, {"a": "e"}}},
	{`a not in {"'", '"', "c"}`, []labels{{}, {"a": "e"}}, []labels{{"a": "c"}, {"a": `"`}, {"a": `'`}}},
	{`a == 'a'`, []labels{{"a": "a"}}, []labels{{"a": "b"}, {}}},
	{`a == "a"`, []labels{{"a": "a"}}, nil},
	{`a != "b"`, []labels{{"a": "a"}}, nil},
	{`a != "a"`, []labels{{}}, []labels{{"a": "a"}}},
	{`a != 'a'`, nil, []labels{{"a": "a"}}},
	{`a contains "a"`, []labels{{"a": "a"}, {"a": "bab"}, {"a": "aaa", "b": "c"}},
		[]labels{{}, {"a": "b"}, {"b": "aaa"}}},
	{`a starts with "a"`, []labels{{"a": "a"}, {"a": "abb"}, {"a": "aaa", "b": "c"}},
		[]labels{{}, {"a": "b"}, {"a": "baa"}, {"b": "aaa"}}},
	{`a ends with "a"`, []labels{{"a": "a"}, {"a": "bba"}, {"a": "aaa", "b": "c"}},
		[]labels{{}, {"a": "b"}, {"a": "aab"}, {"b": "aaa"}}},
	{`a in {"a"}`, []labels{{"a": "a"}}, []labels{{"a": "b"}}},
	{`!a in {"a"}`, []labels{{"a": "b"}}, nil},
	{`a in {"a", "b"}`, []labels{{"a": "a"}, {"a": "b"}}, []labels{{"a": "c"}}},
	{`a not in {"d", "e"}`, []labels{{"a": "a"}}, nil},
	{`a not in {"a"}`, nil, []labels{{"a": "a"}}},
	{`has(a)`, []labels{{"a": "b"}}, nil},
	{`has(b)`, nil, []labels{{"a": "b"}}},
	{`!has(a)`, []labels{{"b": "b"}}, []labels{{"a": "b"}}},
	{`!!has(b)`, nil, []labels{{"a": "b"}}},
	{`! has(a)`, nil, []labels{{"a": "b"}}},
	{`!!! has(a)`, nil, []labels{{"a": "b"}}},
	{`!!!has(a)`, nil, []labels{{"a": "b"}}},
	{`!! ! has(a)`, nil, []labels{{"a": "b"}}},
	{`! !!has(a)`, nil, []labels{{"a": "b"}}},
	{``, []labels{{}, {"a": "b"}}, nil},
	{` `, []labels{{}}, nil},
	{`all()`, []labels{{}}, nil},
	{` all()`, []labels{{}, {"a": "b"}}, nil},
	{`global()`, []labels{{}}, nil},
	{` global()`, []labels{{}, {"a": "b"}}, nil},

	{`a == 'a1' && b == 'b1'`, []labels{{"a": "a1", "b": "b1"}}, nil},
	{`a == 'a1' && b != 'b1'`, nil, []labels{{"a": "a1", "b": "b1"}}},
	{`a != 'a1' && b == 'b1'`, nil, []labels{{"a": "a1", "b": "b1"}}},
	{`a != 'a1' && b != 'b1'`, nil, []labels{{"a": "a1", "b": "b1"}}},
	{`a != 'a1' && !b == 'b1'`, nil, []labels{{"a": "a1", "b": "b1"}}},
	{`!a == 'a1' && b == 'b1'`, nil, []labels{{"a": "a1", "b": "b1"}}},
	{`has(a) && !has(b)`, []labels{{"a": "a"}}, nil},
	{`!has(b) && has(a)`, []labels{{"a": "a"}}, nil},
	{`!(!has(a) || has(b))`, []labels{{"a": "a"}}, nil},
	{`!(has(b) || !has(a))`, []labels{{"a": "a"}}, nil},
	{`a == 'a1' || b == 'b1'`, []labels{{"a": "a1", "b": "b1"}}, nil},
	{`a == 'a1' || b != 'b1'`, []labels{{"a": "a1", "b": "b1"}}, nil},
	{`a != 'a1' || b == 'b1'`, []labels{{"a": "a1", "b": "b1"}}, nil},
	{`a != 'a1' || b != 'b1'`, nil, []labels{{"a": "a1", "b": "b1"}}},
	{`! a == 'a1' || ! b == 'b1'`, nil, []labels{{"a": "a1", "b": "b1"}}},

	// From the tokenizer tests: spellings that must parse.
	{`a=="b"`, []labels{{"a": "b"}}, nil},
	{`contains contains "contains"`, []labels{{"contains": "xcontainsx"}}, []labels{{"contains": "x"}}},
	{`label contains"value"`, []labels{{"label": "value"}}, nil},
	{`label startswith "value"`, []labels{{"label": "values"}}, nil},
	{`label endswith "value"`, []labels{{"label": "avalue"}}, nil},
	{`startswith starts with "value"`, []labels{{"startswith": "values"}}, nil},
	{`endswith ends with "value"`, []labels{{"endswith": "avalue"}}, nil},
	{`label starts  with "value"`, []labels{{"label": "values"}}, nil},
	{`label ends  with "value"`, []labels{{"label": "avalue"}}, nil},
	{`a notin{"bar"}&&!has(foo)||b in{"c"}`, []labels{{"a": "x"}, {"a": "bar", "b": "c"}},
		[]labels{{"a": "bar"}, {"a": "x", "foo": ""}}},
	{`a  not  in  {"bar"}  &&  ! has( foo )  ||  b  in  {"c"} `, []labels{{"a": "x"}}, []labels{{"a": "bar"}}},
	{`has(calico/k8s_ns)`, []labels{{"calico/k8s_ns": ""}}, []labels{{"k8s_ns": ""}}},
	{`calico/k8s_ns == "kube-system" && k8s-app == "kube-dns"`,
		[]labels{{"calico/k8s_ns": "kube-system", "k8s-app": "kube-dns"}}, []labels{{"k8s-app": "kube-dns"}}},
	{`a not in {}`, []labels{{}, {"a": ""}}, nil},
	{`a in {}`, nil, []labels{{}, {"a": ""}}},
	{`a not in {"a","B"}`, []labels{{"a": "b"}}, []labels{{"a": "B"}}},
}

func TestCalicoMatches(t *testing.T) {
	for _, tc := range calicoMatchTests {
		t.Run(tc.sel, func(t *testing.T) {
			sel, err := Parse(tc.sel)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.sel, err)
			}
			again, err := Parse(sel.String())
			if err != nil {
				t.Fatalf("Parse(canonical %q): %v", sel.String(), err)
			}
			for _, s := range []*Selector{sel, again} {
				for _, l := range tc.matches {
					if !s.Evaluate(l) {
						t.Errorf("%q.Evaluate(%v) = false, want true", s, l)
					}
				}
				for _, l := range tc.nonMatches {
					if s.Evaluate(l) {
						t.Errorf("%q.Evaluate(%v) = true, want false", s, l)
					}
				}
			}
			if sel.UniqueID() != again.UniqueID() {
				t.Errorf("UniqueID changed on round trip: got %s, want %s", again.UniqueID(), sel.UniqueID())
			}
		})
	}
}

func TestCalicoBadSelectors(t *testing.T) {
	bad := []string{
		"b == b",          // label == label
		"b contains b",    // label contains label
		"b starts with b", // label starts with label
		"b ends with b",   // label ends with label
		"'b1' == b",       // literal on lhs
		"b",               // bare label
		"a b",             // garbage
		"!",               // garbage
		`foo == "bar" &`,  // garbage
		`foo == "bar" |`,  // garbage
		`foo != ||`,       // garbage
		`foo in {"", ||`,  // garbage
		`foo in ""`,       // expect set literal
		`"FOO`,            // unterminated string
		`"FOO'`,           // unterminated string
		`'FOO`,            // unterminated string
		`(`,               // unterminated paren
		`(a == "foo"`,     // unterminated paren
		`)`,               // unbalanced paren
		`()`,              // empty parens
		`%`,               // unexpected char
		`a == "b" && %`,   // unexpected char
		`a == "b" || %`,   // unexpected char
		`a `,              // should be followed by an operator
		`has(foo) &&`,     // should be followed by an operand
		// From the tokenizer tests.
		`label starts foo "value"`,
		`label ends foo "value"`,
		`label squiggles "value"`,
		`a not in "bar" && !has(foo) || b in c`,
	}
	for _, s := range bad {
		t.Run(s, func(t *testing.T) {
			if sel, err := Parse(s); err == nil {
				t.Errorf("Parse(%q) = %q, want an error", s, sel)
			}
		})
	}
}

func TestCalicoCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "all()"},
		{" all() ", "all()"},
		{" (all() )", "all()"},
		{`! (has( b)||! has(a ))`, "!(has(b) || !has(a))"},
		{`! (a == "b"&&! c != "d")`, `!(a == "b" && !c != "d")`},
		{`a == "'"`, `a == "'"`},
		{`a == '"'`, `a == '"'`},
		{`a contains '"'`, `a contains '"'`},
		{`a contains "'"`, `a contains "'"`},
		{`a startswith '"'`, `a starts with '"'`},
		{`a endswith "'"`, `a ends with "'"`},
		{`a!='"'`, `a != '"'`},
		{`a in {"d"}`, `a in {"d"}`},
		{`a in {"a", "b"}`, `a in {"a", "b"}`},
		{`a in {"d", "a", "b"}`, `a in {"a", "b", "d"}`},
		{`a in {"z", "x", "y", "a"}`, `a in {"a", "x", "y", "z"}`},
		{`a in {"z", "z", "x", "y", "x", "a"}`, `a in {"a", "x", "y", "z"}`},
		// From Calico's visitor tests (without the prefix they add).
		{"k == 'v'", `k == "v"`},
		{"k != 'v'", `k != "v"`},
		{"k contains 'v'", `k contains "v"`},
		{"k starts with 'v'", `k starts with "v"`},
		{"k ends with 'v'", `k ends with "v"`},
		{"k == 'v' && x == 'y'", `(k == "v" && x == "y")`},
		{"k == 'v' || has(x)", `(k == "v" || has(x))`},
		{"!(k == 'v')", `!k == "v"`},
		{"k in {'v'}", `k in {"v"}`},
		{"k not in {'v'}", `k not in {"v"}`},
		{"!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
			`!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			sel, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := sel.String(); got != tc.want {
				t.Errorf("Parse(%q).String() = %s, want %s", tc.in, got, tc.want)
			}
			checkRoundTrip(t, sel)
		})
	}
}

// checkRoundTrip checks that the canonical form parses to itself.
func checkRoundTrip(t *testing.T, sel *Selector) {
	t.Helper()
	again, err := Parse(sel.String())
	if err != nil {
		t.Fatalf("Parse(canonical %q): %v", sel.String(), err)
	}
	if again.String() != sel.String() {
		t.Errorf("canonical form is not stable: got %s, want %s", again.String(), sel.String())
	}
	if again.UniqueID() != sel.UniqueID() {
		t.Errorf("UniqueID changed on round trip: got %s, want %s", again.UniqueID(), sel.UniqueID())
	}
}
