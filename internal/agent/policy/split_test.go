package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
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

// TestMergeRulesEquivalent: on random states and packets, merging runs
// (alone, and after the per-family split) decides every packet as the
// reference compiler's ruleset does and leaves a well-formed ruleset.
func TestMergeRulesEquivalent(t *testing.T) {
	var refRules, flatRules, refCount, mergedCount, flatCount int
	for seed := uint64(1); seed <= 20; seed++ {
		g := NewRandom(seed)
		s := g.State()
		r := rand.New(rand.NewPCG(seed, 11))
		for step := 0; step < 30; step++ {
			what := g.Mutate(s)
			if r.IntN(2) == 0 {
				// Random states seldom hold rules that differ only in
				// ports or peers; dense policies do.
				s.Policies = append(s.Policies, densePolicy(r, fmt.Sprintf("dense-%d-%d", seed, step)))
				what += ", add a dense policy"
			}
			ref, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			forms := map[string]*policy.Ruleset{
				"merged":       policy.MergeRules(ref),
				"split+merged": policy.MergeRules(policy.SplitFamilies(ref)),
			}
			for name, rs := range forms {
				if err := Check(rs); err != nil {
					t.Fatalf("seed %d step %d (%s): %s: ill-formed: %v\n%s", seed, step, what, name, err, rs.Render())
				}
			}
			refCount += countRules(ref)
			mergedCount += countRules(forms["merged"])
			flatCount += countRules(forms["split+merged"])
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
						t.Fatalf("seed %d step %d (%s): %s: %s: accept=%v, reference %v\nreference trace %v\n%s trace %v",
							seed, step, what, name, p, got.Accept, want.Accept, want.Trace, name, got.Trace)
					}
					if name == "split+merged" {
						flatRules += got.Evaluated
					}
				}
				refRules += want.Evaluated
			}
		}
	}
	t.Logf("rules in the rulesets: reference %d, merged %d, split+merged %d; rules evaluated: reference %d, split+merged %d (%.2f×)",
		refCount, mergedCount, flatCount, refRules, flatRules, float64(flatRules)/float64(refRules))
	if mergedCount >= refCount {
		t.Errorf("merging removed no rule (%d, reference %d): the test does not exercise it", mergedCount, refCount)
	}
}

func countRules(rs *policy.Ruleset) int {
	n := 0
	for _, c := range rs.Chains {
		n += len(c.Rules)
	}
	return n
}

// densePolicy is a policy of 4 to 12 rules drawn from a small vocabulary
// (two protocols, four ports, three peers, mostly Allow with some Deny
// and Log), so that many rules differ only in their ports or peers.
func densePolicy(r *rand.Rand, name string) *api.NetworkPolicy {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	var rules []api.Rule
	for range 4 + r.IntN(9) {
		rule := api.Rule{Action: pick("Allow", "Allow", "Allow", "Allow", "Deny", "Log"), Protocol: Proto(pick("TCP", "UDP"))}
		rule.Destination.Ports = Ports(pick("80", "443", "8000:8050", "53"))
		switch r.IntN(3) {
		case 0:
			rule.Source.Selector = pick("app == 'web'", "app == 'db'", "has(trusted)")
		case 1:
			rule.Source.Nets = []string{pick("10.65.0.0/24", "192.0.2.0/24", "10.65.0.9/32")}
		}
		rules = append(rules, rule)
	}
	var in, out []api.Rule
	if r.IntN(2) == 0 {
		in = rules
	} else {
		out = rules
	}
	return NP(pick("default", "dev"), name, float64(r.IntN(5)), pick("all()", "app == 'web'", "has(calico)"), in, out)
}

// TestMergeRulesGroupsRuns: a run of Allow rules is merged by peers, and
// by ports only where the union is one range (a port set would cost more
// than the compares); a Deny ends the run, and rules after it merge on
// their own.
func TestMergeRulesGroupsRuns(t *testing.T) {
	tcp := func(action, sel, port string) api.Rule {
		return api.Rule{Action: action, Protocol: Proto("TCP"), Source: api.EntityRule{Selector: sel}, Destination: api.EntityRule{Ports: Ports(port)}}
	}
	s := ruleState()
	s.Policies = []*api.NetworkPolicy{NP("default", "p", 1, "app == 'web'", []api.Rule{
		tcp("Allow", "app == 'web'", "80"),
		tcp("Allow", "app == 'web'", "443"),
		tcp("Allow", "app == 'db'", "80"),
		tcp("Allow", "app == 'api'", "80"), // matches nobody in namespace default
		tcp("Allow", "has(app)", "80"),
		tcp("Deny", "app == 'db'", "22"),
		tcp("Allow", "app == 'db'", "9000"),
		tcp("Allow", "app == 'db'", "9001"),
	}, nil)}
	ref, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	merged := policy.MergeRules(policy.SplitFamilies(ref))
	got := chainRules(t, merged, "pi-default/p_4")
	want := []string{
		// web, db, api (nobody) and has(app) (web, db) on port 80.
		"meta nfproto ipv4 meta l4proto tcp th dport 80 ip saddr {10.0.0.1, 10.0.0.2} " + allow,
		"meta nfproto ipv4 meta l4proto tcp th dport 443 ip saddr {10.0.0.1} " + allow,
		"meta nfproto ipv4 meta l4proto tcp th dport 22 ip saddr {10.0.0.2} drop",
		"meta nfproto ipv4 meta l4proto tcp th dport 9000-9001 ip saddr {10.0.0.2} " + allow,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pi-default/p_4 (-want +got):\n%s\nreference:\n%s", diff, ref.Chain("pi-default/p"))
	}
}

// TestShareEndpointChainsEquivalent: sharing endpoint chains (alone and
// after the per-family split) decides every random packet as the
// reference does, and holds fewer chains.
func TestShareEndpointChainsEquivalent(t *testing.T) {
	var refChains, sharedChains int
	for seed := uint64(1); seed <= 20; seed++ {
		g := NewRandom(seed)
		s := g.State()
		for step := 0; step < 30; step++ {
			what := g.Mutate(s)
			ref, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			forms := map[string]*policy.Ruleset{
				"shared":       policy.ShareEndpointChains(ref),
				"split+shared": policy.ShareEndpointChains(policy.SplitFamilies(ref)),
			}
			refChains += len(ref.Chains)
			sharedChains += len(forms["shared"].Chains)
			for name, rs := range forms {
				if err := Check(rs); err != nil {
					t.Fatalf("seed %d step %d (%s): %s: ill-formed: %v", seed, step, what, name, err)
				}
			}
			for _, p := range g.Packets(s, 100) {
				want, err := Walk(ref, p)
				if err != nil {
					t.Fatal(err)
				}
				for name, rs := range forms {
					got, err := Walk(rs, p)
					if err != nil {
						t.Fatalf("seed %d step %d (%s): %s: %v", seed, step, what, name, err)
					}
					if got.Accept != want.Accept {
						t.Fatalf("seed %d step %d (%s): %s: %s: accept=%v, reference %v", seed, step, what, name, p, got.Accept, want.Accept)
					}
				}
			}
		}
	}
	t.Logf("chains: reference %d, shared %d", refChains, sharedChains)
	if sharedChains >= refChains {
		t.Errorf("sharing saved no chain (%d, reference %d)", sharedChains, refChains)
	}
}

// TestSharedChainsMakeANewEndpointElementsOnly: with shared chains, a
// new local endpoint with the labels and profile of an existing one adds
// no chain and changes none: only map and set elements.
func TestSharedChainsMakeANewEndpointElementsOnly(t *testing.T) {
	s := CNINetwork()
	before, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints = append(s.Endpoints, WEP(Node, "default", "node--a-cni-web3-eth0", "tby00000web3", []string{"10.65.0.9/32"}, map[string]string{"app": "web"}, "calico"))
	after, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Chains) != len(before.Chains)+2 {
		t.Fatalf("reference: %d chains after, %d before; want its own two", len(after.Chains), len(before.Chains))
	}
	b, a := policy.ShareEndpointChains(before), policy.ShareEndpointChains(after)
	if len(a.Chains) != len(b.Chains) {
		t.Fatalf("shared: %d chains after, %d before; want none added", len(a.Chains), len(b.Chains))
	}
	for i := range a.Chains {
		if a.Chains[i].Name != b.Chains[i].Name || !policy.RulesEqual(a.Chains[i].Rules, b.Chains[i].Rules) {
			t.Errorf("chain %s changed", a.Chains[i].Name)
		}
	}
	for _, m := range []string{policy.MapFromWorkload, policy.MapToWorkload} {
		if n := len(a.Map(m).Elements) - len(b.Map(m).Elements); n != 1 {
			t.Errorf("map %s: %d elements added, want 1", m, n)
		}
	}
}
