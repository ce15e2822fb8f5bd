package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// TestFlattenEquivalent: on random states (with dense policies, whose
// rules share ports and peers) and random packets, the flat-cost form the
// agent programs decides every packet as the reference compiler's ruleset
// does, and is well formed. So does each step of it.
func TestFlattenEquivalent(t *testing.T) {
	var refRules, flatRules, refCount, flatCount, packets int
	for seed := uint64(1); seed <= 20; seed++ {
		g := NewRandom(seed)
		s := g.State()
		r := rand.New(rand.NewPCG(seed, 17))
		for step := 0; step < 30; step++ {
			what := g.Mutate(s)
			if r.IntN(2) == 0 {
				s.Policies = append(s.Policies, densePolicy(r, fmt.Sprintf("dense-%d-%d", seed, step)))
				what += ", add a dense policy"
			}
			ref, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			split := policy.SplitFamilies(ref)
			forms := map[string]*policy.Ruleset{
				"inlined":    policy.Prune(policy.InlinePolicies(split)),
				"dispatched": policy.DispatchPorts(policy.MergeRules(split)),
				"flat":       policy.Flatten(ref),
			}
			for name, rs := range forms {
				if err := Check(rs); err != nil {
					t.Fatalf("seed %d step %d (%s): %s: ill-formed: %v\n%s", seed, step, what, name, err, rs.Render())
				}
			}
			refCount += countRules(ref)
			flatCount += countRules(forms["flat"])
			for _, p := range g.Packets(s, 100) {
				want, err := Walk(ref, p)
				if err != nil {
					t.Fatalf("seed %d step %d (%s): reference: %v", seed, step, what, err)
				}
				for name, rs := range forms {
					got, err := Walk(rs, p)
					if err != nil {
						t.Fatalf("seed %d step %d (%s): %s: %v", seed, step, what, name, err)
					}
					if got.Accept != want.Accept {
						t.Fatalf("seed %d step %d (%s): %s: %s: accept=%v, reference %v\nreference trace %v\n%s trace %v\n%s",
							seed, step, what, name, p, got.Accept, want.Accept, want.Trace, name, got.Trace, rs.Render())
					}
					if name == "flat" {
						flatRules += got.Evaluated
					}
				}
				refRules += want.Evaluated
				packets++
			}
		}
	}
	t.Logf("%d packets; rules in the rulesets: reference %d, flat %d; rules evaluated: reference %d, flat %d (%.2f×)",
		packets, refCount, flatCount, refRules, flatRules, float64(flatRules)/float64(refRules))
}

// TestFlattenWalksFewRules: a new connection to a server that every
// policy selects walks about as many rules with 1,000 policies of 10
// rules as with 10 policies: the cost per connection no longer grows with
// the rules that apply. The reference walks them all.
func TestFlattenWalksFewRules(t *testing.T) {
	walked := map[int][2]int{}
	for _, np := range []int{10, 1000} {
		s := bigState(100, np)
		ref, err := policy.Compile(s)
		if err != nil {
			t.Fatal(err)
		}
		flat := policy.Flatten(ref)
		if err := Check(flat); err != nil {
			t.Fatal(err)
		}
		// From ep-0 (app web, 10.80.0.0) to db (10.65.0.3), to the last
		// port of the last policy that admits web, and to a port nothing
		// admits.
		for i, port := range []uint16{lastWebPort(np), 9} {
			p := Packet{Hook: policy.HookForward, Family: 4, IIf: "eth0", OIf: IfDB, Src: mustAddr("10.80.0.0"), Dst: mustAddr("10.65.0.3"), Proto: 6, SPort: 40000, DPort: port}
			want, err := Walk(ref, p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Walk(flat, p)
			if err != nil {
				t.Fatal(err)
			}
			if got.Accept != want.Accept || got.Accept != (i == 0) {
				t.Fatalf("%d policies, port %d: flat accept=%v, reference %v; want %v", np, port, got.Accept, want.Accept, i == 0)
			}
			t.Logf("%d policies, port %d: reference walks %d rules, flat %d", np, port, want.Evaluated, got.Evaluated)
			w := walked[i]
			w[np/1000] = got.Evaluated
			walked[i] = w
		}
	}
	for i, w := range walked {
		if w[1] > w[0]+2 {
			t.Errorf("packet %d: the flat form walks %d rules with 1,000 policies, %d with 10: want the same", i, w[1], w[0])
		}
	}
}

// lastWebPort is the last port bigState's policies admit from app web.
func lastWebPort(policies int) uint16 {
	for i := policies - 1; i >= 0; i-- {
		for j := 9; j >= 0; j-- {
			if (i+j)%4 == 0 {
				return uint16(10000 + 10*i + j)
			}
		}
	}
	return 0
}

// TestFlattenRealistic: a server selected by 13 of 1,000 policies whose
// rules alternate allows and denies (each to its own port), the client's
// allow in the seventh of them: the flat form walks a handful of rules,
// the reference every rule of the six policies before it.
func TestFlattenRealistic(t *testing.T) {
	s := bigState(100, 0)
	s.Policies = realisticPolicies(1000, 80)
	for _, w := range s.Endpoints {
		if w.Spec.InterfaceName == IfDB {
			w.Labels["t07"] = ""
		}
	}
	ref, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	flat := policy.Flatten(ref)
	if err := Check(flat); err != nil {
		t.Fatal(err)
	}
	// From ep-0 (app web) to db (10.65.0.3), which carries tag t07.
	for _, tc := range []struct {
		port   uint16
		accept bool
	}{{7000, true}, {10003, false}, {9, false}} {
		p := Packet{Hook: policy.HookForward, Family: 4, IIf: "eth0", OIf: IfDB, Src: mustAddr("10.80.0.0"), Dst: mustAddr("10.65.0.3"), Proto: 6, SPort: 40000, DPort: tc.port}
		want, err := Walk(ref, p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Walk(flat, p)
		if err != nil {
			t.Fatal(err)
		}
		if got.Accept != want.Accept || got.Accept != tc.accept {
			t.Fatalf("port %d: flat accept=%v, reference %v, want %v", tc.port, got.Accept, want.Accept, tc.accept)
		}
		t.Logf("port %d: reference walks %d rules, flat %d", tc.port, want.Evaluated, got.Evaluated)
		if got.Evaluated > 16 {
			t.Errorf("port %d: the flat form walks %d rules; want a handful (the reference: %d)", tc.port, got.Evaluated, want.Evaluated)
		}
	}
}

// realisticPolicies: n policies, policy i selecting has(t<i%tags>) in
// order i; rule j of each denies 192.0.2.0/24 (j%3 == 0) or allows an app
// to a port of its own; the policy in the middle of db's (tag t07) also
// allows app web to port 7000.
func realisticPolicies(n, tags int) []*api.NetworkPolicy {
	var out []*api.NetworkPolicy
	var mine []int
	for i := range n {
		if i%tags == 7 {
			mine = append(mine, i)
		}
	}
	middle := mine[len(mine)/2]
	for i := range n {
		var rules []api.Rule
		for j := range 10 {
			r := api.Rule{Action: "Allow", Protocol: Proto("TCP"),
				Source:      api.EntityRule{Selector: fmt.Sprintf("app == '%s'", []string{"web", "db", "cache", "api"}[(i+j)%4])},
				Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + 10*(i%100) + j))}}}
			if j%3 == 0 {
				r = api.Rule{Action: "Deny", Protocol: Proto("TCP"), Source: api.EntityRule{Nets: []string{"192.0.2.0/24"}},
					Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + j))}}}
			}
			rules = append(rules, r)
			if i == middle && j == 5 {
				rules = append(rules, api.Rule{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Selector: "app == 'web'"},
					Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(7000)}}})
			}
		}
		out = append(out, NP("default", fmt.Sprintf("r-%04d", i), float64(i), fmt.Sprintf("has(t%02d)", i%tags), rules, nil))
	}
	return out
}
