package policy_test

import (
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// TestSplitFamiliesEquivalent: on random states and packets, the
// per-family ruleset decides every packet as the reference compiler's
// does, is well formed, and never has a packet walk a rule of the other
// family.
func TestSplitFamiliesEquivalent(t *testing.T) {
	var refRules, splitRules, packets int
	for seed := uint64(1); seed <= 20; seed++ {
		g := NewRandom(seed)
		s := g.State()
		for step := 0; step < 30; step++ {
			what := g.Mutate(s)
			ref, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			split := policy.SplitFamilies(ref)
			if err := Check(split); err != nil {
				t.Fatalf("seed %d step %d (%s): ill-formed: %v\n%s", seed, step, what, err, split.Render())
			}
			for _, p := range g.Packets(s, 100) {
				want, err := Walk(ref, p)
				if err != nil {
					t.Fatalf("seed %d step %d (%s): reference: %v", seed, step, what, err)
				}
				got, err := Walk(split, p)
				if err != nil {
					t.Fatalf("seed %d step %d (%s): split: %v", seed, step, what, err)
				}
				if got.Accept != want.Accept {
					t.Fatalf("seed %d step %d (%s): %s: split accept=%v, reference %v\nreference trace %v\nsplit trace %v",
						seed, step, what, p, got.Accept, want.Accept, want.Trace, got.Trace)
				}
				refRules += want.Evaluated
				splitRules += got.Evaluated
				packets++
			}
		}
	}
	t.Logf("%d packets: %d rules evaluated by the reference ruleset, %d by the per-family one (%.2f×)",
		packets, refRules, splitRules, float64(splitRules)/float64(refRules))
}

// TestSplitFamiliesWalksOneFamily: a new IPv4 connection to a server that
// 100 policies of 10 selector rules select (each rule one nft rule per
// family in the reference) walks half the rules once the families are
// split.
func TestSplitFamiliesWalksOneFamily(t *testing.T) {
	s := bigState(100, 100)
	ref, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	split := policy.SplitFamilies(ref)
	// db (10.65.0.3) receives TCP from an address no rule admits, so every
	// rule of every policy is tried.
	p := Packet{Hook: policy.HookForward, Family: 4, IIf: "eth0", OIf: IfDB, Src: mustAddr("192.0.2.7"), Dst: mustAddr("10.65.0.3"), Proto: 6, SPort: 40000, DPort: 10001}
	want, err := Walk(ref, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Walk(split, p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Accept != want.Accept || want.Accept {
		t.Fatalf("accept: split %v, reference %v; want both false", got.Accept, want.Accept)
	}
	t.Logf("rules evaluated: reference %d, per-family %d", want.Evaluated, got.Evaluated)
	if got.Evaluated*10 > want.Evaluated*6 {
		t.Errorf("the per-family ruleset evaluates %d rules, the reference %d: want at most 60%%", got.Evaluated, want.Evaluated)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
