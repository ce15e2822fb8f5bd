package nft

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// TestPrivilegedEngineKernelEqualsFresh: the agent's path in the kernel.
// One namespace follows random event sequences through the incremental
// engine (remote endpoint, network set and policy changes as element
// updates or no-ops, local endpoint adds as map and set elements, the
// rest compiled in full), its driver applying each
// result in place; after every step its table, read back from the kernel,
// is the table a fresh driver writes into a new namespace from a full
// compile of the same state. The incremental rulesets share chains and
// sets with their predecessors, so this also checks that the driver's
// by-pointer shortcuts never skip a change.
func TestPrivilegedEngineKernelEqualsFresh(t *testing.T) {
	requireRoot(t)
	steps, updates := 0, 0
	for seed := uint64(1); seed <= 5; seed++ {
		g := NewRandom(seed)
		s := g.State()
		r := rand.New(rand.NewPCG(seed, 41))
		eng := policy.NewEngine(true)
		rs, err := eng.Full(s)
		if err != nil {
			t.Fatal(err)
		}
		ns := newNS(t, "tbyinc-")
		d := ns.driver()
		mustApply(t, d, rs)
		for step := range 16 {
			var chs []policy.Change
			var what string
			switch r.IntN(6) {
			case 0:
				what = g.Mutate(s)
			case 1:
				chs, what = g.PolicyChange(s)
			case 2:
				var ch policy.Change
				ch, what = g.LocalAdd(s)
				chs = []policy.Change{ch}
			default:
				var ch policy.Change
				ch, what = g.RemoteChange(s)
				chs = []policy.Change{ch}
			}
			got, ok := eng.Update(chs)
			if chs == nil || !ok {
				if got, err = eng.Full(s); err != nil {
					t.Fatal(err)
				}
			} else {
				updates++
			}
			mustApply(t, d, got)
			// The driver trusts its model after its own commit; read the
			// kernel back to compare what it really holds.
			kernel := mustDump(t, d)
			full, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			want := freshDump(t, policy.Flatten(full))
			if diff := cmp.Diff(want, kernel); diff != "" {
				t.Fatalf("seed %d step %d (%s): the kernel differs from a fresh full apply (-fresh +incremental):\n%s", seed, step, what, diff)
			}
			steps++
		}
	}
	t.Logf("%s", fmt.Sprintf("%d steps (%d taken by Update), kernel equal to a fresh full apply after each", steps, updates))
	if updates == 0 {
		t.Fatal("no step went through Update")
	}
}
