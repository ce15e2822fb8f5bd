package selector

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		canon string
		yes   []labels
		no    []labels
	}{
		{"and binds tighter than or", `a == "1" || b == "1" && c == "1"`, `(a == "1" || (b == "1" && c == "1"))`,
			[]labels{{"a": "1"}, {"b": "1", "c": "1"}}, []labels{{"b": "1"}, {"c": "1"}}},
		{"and binds tighter than or, and first", `b == "1" && c == "1" || a == "1"`, `((b == "1" && c == "1") || a == "1")`,
			[]labels{{"a": "1"}, {"b": "1", "c": "1"}}, []labels{{"b": "1"}}},
		{"parens override", `(a == "1" || b == "1") && c == "1"`, `((a == "1" || b == "1") && c == "1")`,
			[]labels{{"a": "1", "c": "1"}, {"b": "1", "c": "1"}}, []labels{{"a": "1"}, {"c": "1"}}},
		{"not binds tighter than and", `!has(a) && has(b)`, `(!has(a) && has(b))`,
			[]labels{{"b": ""}}, []labels{{"a": "", "b": ""}, {}}},
		{"not binds tighter than or", `!has(a) || has(b)`, `(!has(a) || has(b))`,
			[]labels{{}, {"a": "", "b": ""}}, []labels{{"a": ""}}},
		{"not of a group", `!(has(a) || has(b))`, `!(has(a) || has(b))`,
			[]labels{{}}, []labels{{"a": ""}, {"b": ""}}},
		{"not binds looser than a term", `!a == "1"`, `!a == "1"`,
			[]labels{{}, {"a": "2"}}, []labels{{"a": "1"}}},
		{"not before in", `!a in {"x"}`, `!a in {"x"}`, []labels{{}, {"a": "y"}}, []labels{{"a": "x"}}},
		{"flat and", `has(a) && has(b) && has(c)`, `(has(a) && has(b) && has(c))`,
			[]labels{{"a": "", "b": "", "c": ""}}, []labels{{"a": "", "b": ""}}},
		{"flat or", `has(a) || has(b) || has(c)`, `(has(a) || has(b) || has(c))`,
			[]labels{{"c": ""}}, []labels{{}}},
		{"grouped and stays grouped", `(has(a) && has(b)) && has(c)`, `((has(a) && has(b)) && has(c))`,
			[]labels{{"a": "", "b": "", "c": ""}}, []labels{{"a": "", "c": ""}}},
		{"redundant parens vanish", `((( has(a) )))`, `has(a)`, []labels{{"a": ""}}, []labels{{}}},
		{"double not cancels", `!!(has(a))`, `has(a)`, []labels{{"a": ""}}, []labels{{}}},
		{"not of not cancels", `!(!has(a))`, `has(a)`, []labels{{"a": ""}}, []labels{{}}},
		{"not of parenthesised not cancels", `!((!(has(a))))`, `has(a)`, []labels{{"a": ""}}, []labels{{}}},
		{"not all", `!all()`, `!all()`, nil, []labels{{}}},
		{"or with all", `has(a) || all()`, `(has(a) || all())`, []labels{{}}, nil},
		{"global in and", `global() && has(a)`, `(global() && has(a))`, []labels{{"a": ""}}, []labels{{}}},
		{"newlines are blanks", "has(a)\n&&\r\n\thas(b)\n", `(has(a) && has(b))`, []labels{{"a": "", "b": ""}}, []labels{{"a": ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := sel.String(); got != tc.canon {
				t.Errorf("Parse(%q).String() = %s, want %s", tc.in, got, tc.canon)
			}
			for _, l := range tc.yes {
				if !sel.Evaluate(l) {
					t.Errorf("%s.Evaluate(%v) = false, want true", sel, l)
				}
			}
			for _, l := range tc.no {
				if sel.Evaluate(l) {
					t.Errorf("%s.Evaluate(%v) = true, want false", sel, l)
				}
			}
			checkRoundTrip(t, sel)
		})
	}
}

func TestAbsentKey(t *testing.T) {
	tests := []struct {
		sel  string
		want bool // for labels without key k
	}{
		{`k == "v"`, false},
		{`k == ""`, false},
		{`k != "v"`, true},
		{`k != ""`, true},
		{`k in {"v"}`, false},
		{`k in {""}`, false},
		{`k not in {"v"}`, true},
		{`k not in {""}`, true},
		{`k contains ""`, false},
		{`k starts with ""`, false},
		{`k ends with ""`, false},
		{`has(k)`, false},
		{`!has(k)`, true},
		{`!k == "v"`, true},
		{`!k != "v"`, false},
	}
	for _, tc := range tests {
		t.Run(tc.sel, func(t *testing.T) {
			sel := MustParse(tc.sel)
			for _, l := range []labels{nil, {}, {"other": "v"}} {
				if got := sel.Evaluate(l); got != tc.want {
					t.Errorf("%s.Evaluate(%v) = %t, want %t", sel, l, got, tc.want)
				}
			}
		})
	}
}

func TestEmptyValues(t *testing.T) {
	tests := []struct {
		sel  string
		l    labels
		want bool
	}{
		{`k == ""`, labels{"k": ""}, true},
		{`k != ""`, labels{"k": ""}, false},
		{`k contains ""`, labels{"k": ""}, true},
		{`k starts with ""`, labels{"k": "x"}, true},
		{`k ends with ""`, labels{"k": "x"}, true},
		{`k in {""}`, labels{"k": ""}, true},
		{`k not in {""}`, labels{"k": ""}, false},
		{`has(k)`, labels{"k": ""}, true},
	}
	for _, tc := range tests {
		t.Run(tc.sel, func(t *testing.T) {
			if got := MustParse(tc.sel).Evaluate(tc.l); got != tc.want {
				t.Errorf("%s.Evaluate(%v) = %t, want %t", tc.sel, tc.l, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		pos  int
		msg  string // substring of ParseError.Msg
	}{
		{"missing value", `app == `, 7, "expected a quoted string after \"==\", found end of input"},
		{"label as value", `b == b`, 5, `expected a quoted string after "==", found label "b"`},
		{"literal on lhs", `'b1' == b`, 0, `expected an expression`},
		{"bare label", `b`, 1, `expected an operator`},
		{"two labels", `a b`, 2, `after label "a", found "b"`},
		{"lone not", `!`, 1, "expected an expression, found end of input"},
		{"single ampersand", `foo == "bar" &`, 13, `expected "&&", found "&"`},
		{"single pipe", `foo == "bar" |`, 13, `expected "||", found "|"`},
		{"single equals", `a = "b"`, 2, `expected "==", found "="`},
		{"set without brace", `foo in ""`, 7, `expected "{" after "in", found string ""`},
		{"set garbage", `foo in {"", ||`, 12, `expected a quoted string or "}" in the set, found "||"`},
		{"set missing comma", `a in {"a" "b"}`, 10, `expected "," or "}" in the set, found string "b"`},
		{"set leading comma", `a in {,}`, 6, `expected a quoted string or "}"`},
		{"unterminated double", `a == "FOO`, 5, `unterminated string: no closing '"'`},
		{"unterminated mixed", `"FOO'`, 0, `unterminated string`},
		{"unterminated single", `a == 'FOO`, 5, `unterminated string: no closing '\''`},
		{"open paren", `(`, 1, "expected an expression, found end of input"},
		{"unclosed paren", `(a == "foo"`, 11, `expected ")" to close "(" at position 0, found end of input`},
		{"unclosed inner paren", `has(a) && (has(b) || (has(c))`, 29, `expected ")" to close "(" at position 10`},
		{"stray close paren", `a == "x")`, 8, `unbalanced ")"`},
		{"close paren first", `)`, 0, `found ")"`},
		{"empty parens", `()`, 1, `found ")"`},
		{"unexpected char", `%`, 0, `unexpected character '%'`},
		{"unexpected char after and", `a == "b" && %`, 12, `unexpected character '%'`},
		{"invalid utf-8", "has(a) && \xff", 10, `unexpected character byte 0xff`},
		{"trailing label", `a == "b" c`, 9, `expected "&&", "||" or end of input, found label "c"`},
		{"trailing operand", `has(foo) &&`, 11, "found end of input"},
		{"starts without with", `label starts foo "value"`, 13, `expected "with" after "starts", found "foo"`},
		{"ends without with", `label ends foo "value"`, 11, `expected "with" after "ends"`},
		{"not without in", `label not foo`, 10, `expected "in" after "not"`},
		{"unknown operator", `label squiggles "value"`, 6, `after label "label", found "squiggles"`},
		{"has with space", `has (a)`, 4, `after label "has", found "("`},
		{"has without key", `has()`, 4, `expected a label key inside has(), found ')'`},
		{"has unclosed", `has(a`, 5, `expected ")" to close "has(", found end of input`},
		{"has two keys", `has(a b)`, 6, `expected ")" to close "has("`},
		{"all with argument", `all(a)`, 4, `expected ")" after "all("`},
		{"global unclosed", `global(`, 7, `expected ")" after "global("`},
		{"bad key uppercase prefix", `Foo.com/x == "1"`, 0, `invalid label key "Foo.com/x": prefix "Foo.com"`},
		{"bad key two slashes", `has(a/b/c)`, 4, `invalid label key "a/b/c": more than one "/"`},
		{"bad key leading dash", `x == "1" && -a == "1"`, 12, `invalid label key "-a": name part must start and end`},
		{"bad key empty name", `a/ == "1"`, 0, `name part is empty`},
		{"bad key long name", strings.Repeat("n", 64) + ` == "1"`, 0, `name part is 64 characters long`},
		{"set after not in", `a not in "x"`, 9, `expected "{" after "not in"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want an error", tc.in, sel)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error is %T, want *ParseError", tc.in, err)
			}
			if pe.Pos != tc.pos {
				t.Errorf("Parse(%q) error position = %d, want %d (%v)", tc.in, pe.Pos, tc.pos, err)
			}
			if !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tc.in, pe.Msg, tc.msg)
			}
			if pe.Selector != tc.in {
				t.Errorf("ParseError.Selector = %q, want %q", pe.Selector, tc.in)
			}
		})
	}
}

func TestParseErrorText(t *testing.T) {
	_, err := Parse(`app == `)
	const want = `selector "app == ": position 7: expected a quoted string`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Parse error = %v, want prefix %q", err, want)
	}

	long := strings.Repeat("x == 'y' && ", 50) + "%"
	_, err = Parse(long)
	if err == nil {
		t.Fatalf("Parse(long garbage) succeeded")
	}
	if got := err.Error(); len(got) > 200 || !strings.Contains(got, `...: position 600: unexpected character '%'`) {
		t.Errorf("long selector error = %q, want a short message quoting a prefix", got)
	}

	_, err = Parse(strings.Repeat("k", 1000) + ` == "v"`)
	if err == nil {
		t.Fatalf("Parse(long key) succeeded")
	}
	if got := err.Error(); len(got) > 300 || !strings.Contains(got, `name part is 1000 characters long`) {
		t.Errorf("long key error = %q, want a short message naming the length", got)
	}
}

func TestLimits(t *testing.T) {
	nest := func(n int, inner string) string {
		return strings.Repeat("(", n) + inner + strings.Repeat(")", n)
	}
	// chain builds has(a) && (has(a) && (... has(a) && has(a))), n parens
	// and n+1 groups deep.
	chain := func(n int) string {
		return strings.Repeat("has(a) && (", n) + "has(a) && has(a)" + strings.Repeat(")", n)
	}
	longValue := func(total int) string {
		// `a == "` + value + `"` is total bytes long.
		return `a == "` + strings.Repeat("v", total-7) + `"`
	}
	// expanding is at most MaxLen bytes long but its canonical form is longer:
	// each a=='' grows to a == "" and the whole gains parentheses.
	expanding := strings.Repeat("a==''||", MaxLen/7-1) + "a==''"

	tests := []struct {
		name   string
		in     string
		ok     bool
		errMsg string
	}{
		{"max length", longValue(MaxLen), true, ""},
		{"over max length", longValue(MaxLen + 1), false, "bytes long; the limit is 4096"},
		{"huge input", strings.Repeat("(", 1<<20), false, "bytes long; the limit is 4096"},
		{"max paren depth", nest(MaxDepth, "has(a)"), true, ""},
		{"over paren depth", nest(MaxDepth+1, "has(a)"), false, "parentheses nest more than 64 deep"},
		{"unclosed deep parens", strings.Repeat("(", 4000), false, "parentheses nest more than 64 deep"},
		{"many nots", strings.Repeat("!", 4000) + "has(a)", true, ""},
		{"many nots and parens", strings.Repeat("!(", 2000), false, "parentheses nest more than 64 deep"},
		{"max group depth", chain(MaxDepth - 1), true, ""},
		{"over group depth", chain(MaxDepth), false, "groups nest 65 deep; the limit is 64"},
		{"long flat and", strings.Repeat("has(a)&&", 300) + "has(a)", true, ""},
		{"canonical too long", expanding, false, "canonical form is"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := Parse(tc.in)
			if tc.ok {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				checkRoundTrip(t, sel)
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded with canonical form of %d bytes, want an error", len(sel.String()))
			}
			if !strings.Contains(err.Error(), tc.errMsg) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tc.errMsg)
			}
		})
	}
	if len(expanding) > MaxLen {
		t.Errorf("test input expanding is %d bytes, want at most %d", len(expanding), MaxLen)
	}
}

func TestUniqueID(t *testing.T) {
	idPattern := regexp.MustCompile(`^[a-z2-7]{16}$`)

	// Golden values: IDs name nftables sets that outlive the agent process,
	// so they must not change between releases.
	golden := map[string]string{
		"all()":                     "ewudctcv7zrelfok",
		`!(has(b) || !has(a))`:      "t64mdpaavkyzrywx",
		`a in {"a", "x", "y", "z"}`: "zq3bsvc6sldpxnaj",
	}
	for in, want := range golden {
		if got := MustParse(in).UniqueID(); got != want {
			t.Errorf("UniqueID(%s) = %s, want %s", in, got, want)
		}
	}

	// Spellings of one selector share an ID.
	same := [][]string{
		{"", " ", "all()", " ( all( ) ) ", "!!all()"},
		{`a == "b"`, `a=='b'`, `(a == "b")`, `!!a == "b"`, `!(!(a == 'b'))`},
		{`a in {"x", "y"}`, `a in {'y', "x", 'x',}`, `a in{"y","x"}`},
		{`a starts with "x"`, `a startswith 'x'`, `a starts   with "x"`},
		{`(has(a) && has(b)) || has(c)`, `has(a) && has(b) || has(c)`, `(has(a)&&has(b))||(has(c))`},
	}
	for _, group := range same {
		want := MustParse(group[0]).UniqueID()
		for _, in := range group[1:] {
			if got := MustParse(in).UniqueID(); got != want {
				t.Errorf("UniqueID(%q) = %s, want %s as for %q", in, got, want, group[0])
			}
		}
	}

	// Different selectors get different IDs.
	distinct := []string{
		"all()", "global()", "!all()", "!global()",
		`a == "b"`, `a != "b"`, `!a == "b"`, `a == "c"`, `b == "b"`,
		`a contains "b"`, `a starts with "b"`, `a ends with "b"`,
		`a in {"b"}`, `a not in {"b"}`, `a in {"b", "c"}`, `a in {}`, `a not in {}`,
		`has(a)`, `!has(a)`, `has(b)`,
		`has(a) && has(b)`, `has(a) || has(b)`, `has(b) && has(a)`,
		`(has(a) && has(b)) && has(c)`, `has(a) && has(b) && has(c)`, `has(a) && (has(b) && has(c))`,
		`a == "'"`, `a == '"'`, `a == ""`, `a == " "`,
	}
	seen := map[string]string{}
	for _, in := range distinct {
		sel := MustParse(in)
		id := sel.UniqueID()
		if !idPattern.MatchString(id) {
			t.Errorf("UniqueID(%s) = %q, want 16 characters of [a-z2-7]", sel, id)
		}
		if id != sel.UniqueID() {
			t.Errorf("UniqueID(%s) is not stable", sel)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("UniqueID(%s) = UniqueID(%s) = %s, want distinct", sel, prev, id)
		}
		seen[id] = sel.String()
	}
}

func TestLabelKeys(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"global()", nil},
		{`a == "1"`, []string{"a"}},
		{`a == "1" && (has(b) || c in {"x"}) && !has(a) && d not in {} && e contains "" && f starts with "" && g ends with "" && h != ""`,
			[]string{"a", "b", "c", "d", "e", "f", "g", "h"}},
		{`projectcalico.org/namespace == "x" || calico/k8s_ns == "y"`, []string{"calico/k8s_ns", "projectcalico.org/namespace"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			sel := MustParse(tc.in)
			got := sel.LabelKeys()
			if diff := cmp.Diff(tc.want, got, cmpEmptyNil); diff != "" {
				t.Errorf("LabelKeys() mismatch (-want +got):\n%s", diff)
			}
			if len(got) > 0 {
				got[0] = "mutated"
				if sel.LabelKeys()[0] == "mutated" {
					t.Errorf("LabelKeys() returned the selector's own slice")
				}
			}
		})
	}
}

var cmpEmptyNil = cmp.Comparer(func(a, b []string) bool {
	return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b)
})

func TestIsAllIsGlobal(t *testing.T) {
	tests := []struct {
		in            string
		all, isGlobal bool
	}{
		{"", true, false},
		{"  ", true, false},
		{"all()", true, false},
		{"((all()))", true, false},
		{"!!all()", true, false},
		{"!all()", false, false},
		{"all() && all()", false, false},
		{"global()", false, true},
		{"(global())", false, true},
		{"global() && has(a)", false, false},
		{"has(a)", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			sel := MustParse(tc.in)
			if got := sel.IsAll(); got != tc.all {
				t.Errorf("IsAll() = %t, want %t", got, tc.all)
			}
			if got := sel.IsGlobal(); got != tc.isGlobal {
				t.Errorf("IsGlobal() = %t, want %t", got, tc.isGlobal)
			}
		})
	}
}

func TestZeroValue(t *testing.T) {
	for name, sel := range map[string]*Selector{"zero": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			all := MustParse("")
			if !sel.Evaluate(labels{"a": "b"}) || !sel.Evaluate(nil) {
				t.Errorf("Evaluate = false, want true")
			}
			if got := sel.String(); got != "all()" {
				t.Errorf("String() = %q, want all()", got)
			}
			if got := sel.UniqueID(); got != all.UniqueID() {
				t.Errorf("UniqueID() = %s, want %s", got, all.UniqueID())
			}
			if !sel.IsAll() || sel.IsGlobal() || len(sel.LabelKeys()) != 0 {
				t.Errorf("IsAll, IsGlobal, LabelKeys = %t, %t, %v; want true, false, []",
					sel.IsAll(), sel.IsGlobal(), sel.LabelKeys())
			}
		})
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		r := recover()
		if _, ok := r.(*ParseError); !ok {
			t.Errorf("MustParse(bad) panicked with %v, want a *ParseError", r)
		}
	}()
	MustParse("a ==")
}

func TestValidateLabelKey(t *testing.T) {
	tests := []struct {
		key string
		err string // substring; "" means valid
	}{
		{"a", ""},
		{"app", ""},
		{"k8s-app", ""},
		{"A_b.c-D9", ""},
		{"9", ""},
		{"calico/k8s_ns", ""},
		{"projectcalico.org/namespace", ""},
		{"pcns.projectcalico.org/name", ""},
		{"a-b.c0/X", ""},
		{strings.Repeat("n", 63), ""},
		{strings.Repeat("p", 63) + "." + strings.Repeat("q", 63) + "/n", ""},
		{"", "name part is empty"},
		{"a/", "name part is empty"},
		{"/a", `prefix "": empty`},
		{"a/b/c", `more than one "/"`},
		{strings.Repeat("n", 64), "name part is 64 characters long"},
		{"-a", "must start and end with a letter or digit"},
		{"a_", "must start and end with a letter or digit"},
		{"a..b/c", "empty DNS label"},
		{"Example.com/a", `DNS label "Example"`},
		{"ex_ample.com/a", `DNS label "ex_ample" contains '_'`},
		{"-x.com/a", `DNS label "-x" must start and end`},
		{strings.Repeat("p.", 127) + "p/a", "255 characters long; the limit is 253"},
		{"a b", `name part contains ' '`},
		{"a:b", `name part contains ':'`},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			err := ValidateLabelKey(tc.key)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("ValidateLabelKey(%q) = %v, want nil", tc.key, err)
			case tc.err != "" && err == nil:
				t.Errorf("ValidateLabelKey(%q) = nil, want an error containing %q", tc.key, tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Errorf("ValidateLabelKey(%q) = %v, want it to contain %q", tc.key, err, tc.err)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	sel := MustParse(`app in {"a", "b"} && !has(x)`)
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 1000 {
				ok = ok && sel.Evaluate(labels{"app": "a"}) && sel.String() != "" && sel.UniqueID() != ""
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Errorf("concurrent Evaluate returned false, want true")
		}
	}
}
