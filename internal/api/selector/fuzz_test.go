package selector

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are well formed,
// and that an accepted selector's canonical form parses to itself and
// evaluates the same on random label sets.
func FuzzParse(f *testing.F) {
	for _, tc := range calicoMatchTests {
		f.Add(tc.sel)
	}
	for _, s := range []string{
		`a in {"a",}`, `a in {,}`, `!(!has(a))`, `has( calico/k8s_ns )`, `a == "x")`,
		`(has(a) && has(b)) && has(c)`, `!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))`,
		`global() || !global()`, "has(a)\n&&\thas(b)", `x == "\xff"`, `Foo.com/x == "1"`,
		`a notin{'"'}`, `has(a) && (has(b) || (has(c))`, `k == '' || k != "" && !k in {}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sel, err := Parse(in)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error is %T (%v), want *ParseError", in, err, err)
			}
			if pe.Pos < 0 || pe.Pos > len(in) || pe.Selector != in || pe.Msg == "" {
				t.Fatalf("Parse(%q) gave a malformed error: %+v", in, pe)
			}
			return
		}
		canon := sel.String()
		if len(canon) > MaxLen {
			t.Fatalf("Parse(%q): canonical form is %d bytes, over MaxLen", in, len(canon))
		}
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) gave canonical form %q, which does not parse: %v", in, canon, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form of %q is not stable: %q then %q", in, canon, again.String())
		}
		if again.UniqueID() != sel.UniqueID() {
			t.Fatalf("UniqueID of %q changed on round trip", in)
		}
		if !slices.Equal(again.LabelKeys(), sel.LabelKeys()) {
			t.Fatalf("LabelKeys of %q changed on round trip: %v then %v", in, sel.LabelKeys(), again.LabelKeys())
		}
		// The negation, where it fits the limits, checks how the canonical
		// form binds when embedded in a larger expression.
		neg, _ := Parse("!(" + canon + ")")

		keys := append(sel.LabelKeys(), "unrelated")
		vals := valuePool(sel.root)
		h := fnv.New64a()
		h.Write([]byte(in))
		rng := rand.New(rand.NewPCG(h.Sum64(), 0))
		for range 32 {
			l := labels{}
			for _, k := range keys {
				if rng.IntN(3) > 0 {
					l[k] = vals[rng.IntN(len(vals))]
				}
			}
			want := sel.Evaluate(l)
			if got := again.Evaluate(l); got != want {
				t.Fatalf("%q and its canonical form %q disagree on %v: %t then %t", in, canon, l, want, got)
			}
			if neg != nil && neg.Evaluate(l) == want {
				t.Fatalf("%q and %q agree on %v", canon, neg, l)
			}
			// The label index's shortcut: a required equality holds in
			// every match.
			if k, v, ok := sel.RequiredEqual(); ok && want && l[k] != v {
				t.Fatalf("%q matches %v, but RequiredEqual says %s == %q", in, l, k, v)
			}
		}
	})
}

// valuePool returns the literals in a selector and some near misses.
func valuePool(n node) []string {
	pool := []string{"", "x"}
	add := func(v string) {
		pool = append(pool, v, v+"x", "x"+v, v[:len(v)/2], v[len(v)/2:])
	}
	var walk func(node)
	walk = func(n node) {
		switch n := n.(type) {
		case *cmpNode:
			add(n.val)
		case *setNode:
			for _, v := range n.vals {
				add(v)
			}
		case *notNode:
			walk(n.x)
		case *andNode:
			for _, x := range n.xs {
				walk(x)
			}
		case *orNode:
			for _, x := range n.xs {
				walk(x)
			}
		}
	}
	walk(n)
	return pool
}
