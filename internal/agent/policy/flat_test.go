package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
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
