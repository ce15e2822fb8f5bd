package nft

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// tamper makes one random hand edit to the table, as an admin or another
// program might.
func tamper(t *testing.T, r *rand.Rand, ns *testNS, rs *policy.Ruleset) string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.fd.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tb := tableRef()
	var what string
	switch r.IntN(5) {
	case 0:
		c.DelTable(tb)
		what = "delete the table"
	case 1:
		ch := rs.Chains[r.IntN(len(rs.Chains))]
		c.FlushChain(&nftables.Chain{Name: ch.Name, Table: tb})
		what = "flush chain " + ch.Name
	case 2:
		ch := rs.Chains[r.IntN(len(rs.Chains))]
		c.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: ch.Name, Table: tb}, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		what = "append accept to " + ch.Name
	case 3:
		var sets []*policy.Set
		for _, s := range rs.Sets {
			if len(s.Elements) > 0 {
				sets = append(sets, s)
			}
		}
		if len(sets) == 0 {
			return "nothing"
		}
		s := sets[r.IntN(len(sets))]
		toks := setTokens(s)
		if err := c.SetDeleteElements(&nftables.Set{Table: tb, Name: s.Name}, elements(toks[:1])); err != nil {
			t.Fatal(err)
		}
		what = "delete an element of " + s.Name
	case 4:
		c.AddChain(&nftables.Chain{Name: "intruder", Table: tb})
		c.AddSet(&nftables.Set{Table: tb, Name: "intruder", KeyType: nftables.TypeIPAddr}, nil)
		what = "add a chain and a set"
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("tamper (%s): %v", what, err)
	}
	return what
}

// TestPrivilegedRandomWalk drives one driver through random sequences of
// states, with occasional hand edits to the table in between, and checks
// that the kernel ends up exactly where a fresh apply of the last state
// puts it. Along the way, the driver's cached view must always match the
// kernel (re-reading it finds nothing to do).
func TestPrivilegedRandomWalk(t *testing.T) {
	requireRoot(t)
	steps := 40
	if testing.Short() {
		steps = 10
	}
	for seed := uint64(1); seed <= 5; seed++ {
		g := policytest.NewRandom(seed)
		r := rand.New(rand.NewPCG(seed, 7))
		s := g.State()
		ns := newNS(t, "tbyrw-")
		d := ns.driver()
		var rs *policy.Ruleset
		var log []string
		for step := 0; step < steps; step++ {
			log = append(log, g.Mutate(s))
			rs = mustCompile(t, s)
			if step > 0 && r.IntN(6) == 0 {
				log = append(log, "tamper: "+tamper(t, r, ns, d.applied))
			}
			if err := d.Apply(t.Context(), rs); err != nil {
				t.Fatalf("seed %d step %d: Apply: %v\nsteps: %q", seed, step, err, log)
			}
			if r.IntN(5) == 0 {
				d.valid = false
				if ch := mustApply(t, d, rs); ch.Committed {
					t.Fatalf("seed %d step %d: the cache had drifted from the kernel: re-reading it led to %+v\nsteps: %q", seed, step, ch, log)
				}
			}
		}
		if diff := cmp.Diff(freshDump(t, rs), mustDump(t, d)); diff != "" {
			t.Errorf("seed %d: after the walk the kernel differs from a fresh apply (-fresh +walk):\n%s\nsteps: %q", seed, diff, log)
		}
	}
}
