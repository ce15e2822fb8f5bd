package policy_test

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// TestRandomStatesAreDualStack: the random states the oracle and
// equivalence tests walk are valid Calico objects (none quarantined) and
// hold every IPv6 shape: dual-stack and IPv6-only endpoints, IPv6 nets in
// rules and network sets, ipVersion 6 rules, ICMPv6 rules with types, and
// IPv6 packets, so those tests exercise IPv6 as much as IPv4.
func TestRandomStatesAreDualStack(t *testing.T) {
	seen := map[string]int{}
	for seed := uint64(1); seed <= 20; seed++ {
		g := NewRandom(seed)
		s := g.State()
		for step := 0; step < 30; step++ {
			what := g.Mutate(s)
			for _, r := range stateResources(s) {
				if err := api.Validate(r); err != nil {
					t.Fatalf("seed %d step %d (%s): %s %s is not valid: %v", seed, step, what, r.KindInfo().Kind, r.GetObjectMeta().Name, err)
				}
			}
			for _, r := range stateRules(s) {
				gp := GNP("rule", 1, "all()", []api.Rule{r}, nil)
				if err := api.Validate(gp); err != nil {
					t.Fatalf("seed %d step %d (%s): rule %+v is not valid: %v", seed, step, what, r, err)
				}
			}
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs.Quarantined) > 0 {
				t.Fatalf("seed %d step %d (%s): quarantined %v", seed, step, what, rs.Quarantined)
			}
			countShapes(s, seen)
			for _, p := range g.Packets(s, 50) {
				if p.Family == 6 {
					seen["IPv6 packet"]++
				}
			}
		}
	}
	for _, k := range []string{"dual-stack endpoint", "IPv6-only endpoint", "IPv6 net in a rule", "IPv6 net in a network set",
		"ipVersion 6 rule", "ICMPv6 rule with a type", "IPv6 packet"} {
		if seen[k] == 0 {
			t.Errorf("no %s in 20 random walks", k)
		}
	}
	t.Logf("shapes seen: %v", seen)
}

func stateResources(s *policy.State) []api.Resource {
	var out []api.Resource
	for _, r := range s.Endpoints {
		out = append(out, r)
	}
	for _, r := range s.GlobalNetworkSets {
		out = append(out, r)
	}
	for _, r := range s.NetworkSets {
		out = append(out, r)
	}
	return out
}

func countShapes(s *policy.State, seen map[string]int) {
	for _, e := range s.Endpoints {
		v4, v6 := false, false
		for _, n := range e.Spec.IPNetworks {
			p := netip.MustParsePrefix(n)
			v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
		}
		switch {
		case v4 && v6:
			seen["dual-stack endpoint"]++
		case v6:
			seen["IPv6-only endpoint"]++
		}
	}
	for _, n := range s.GlobalNetworkSets {
		if slices.ContainsFunc(n.Spec.Nets, isIPv6Net) {
			seen["IPv6 net in a network set"]++
		}
	}
	for _, r := range stateRules(s) {
		if slices.ContainsFunc(slices.Concat(r.Source.Nets, r.Source.NotNets, r.Destination.Nets, r.Destination.NotNets), isIPv6Net) {
			seen["IPv6 net in a rule"]++
		}
		if r.IPVersion != nil && *r.IPVersion == 6 {
			seen["ipVersion 6 rule"]++
		}
		if r.Protocol != nil && *r.Protocol == "ICMPv6" && (r.ICMP != nil || r.NotICMP != nil) {
			seen["ICMPv6 rule with a type"]++
		}
	}
}

// stateRules are the rules of every policy of s.
func stateRules(s *policy.State) []api.Rule {
	var rules []api.Rule
	for _, p := range s.Policies {
		rules = slices.Concat(rules, p.Spec.Ingress, p.Spec.Egress)
	}
	for _, p := range s.GlobalPolicies {
		rules = slices.Concat(rules, p.Spec.Ingress, p.Spec.Egress)
	}
	return rules
}

func isIPv6Net(n string) bool {
	p, err := netip.ParsePrefix(n)
	return err == nil && p.Addr().Is6()
}

// TestIPv6DecidesAsIPv4: on random states mirrored into dual stack (every
// IPv4 address, net, pool and expected IP gets an IPv6 twin in
// fd00:46::/96, every IPv4-only rule an IPv6 twin: ipVersion 6, ICMPv6
// with the matching type, the twin nets; IPv6-only content is dropped),
// every random IPv4 packet and its IPv6 twin get the same verdict, in the
// reference ruleset and in the per-family form the agent programs. A rule,
// set or chain that works for one family only shows up here.
func TestIPv6DecidesAsIPv4(t *testing.T) {
	var packets int
	for seed := uint64(1); seed <= 20; seed++ {
		g := NewRandom(seed)
		s := g.State()
		for step := 0; step < 30; step++ {
			what := g.Mutate(s)
			m := mirrorState(t, s)
			ref, err := policy.Compile(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(ref.Quarantined) > 0 {
				t.Fatalf("seed %d step %d (%s): the mirrored state has quarantined objects %v", seed, step, what, ref.Quarantined)
			}
			forms := map[string]*policy.Ruleset{"reference": ref, "flat": policy.Flatten(ref)}
			for _, p := range g.Packets(m, 150) {
				p6, ok := mirrorPacket(p)
				if !ok {
					continue
				}
				packets++
				for name, rs := range forms {
					o4, err := Walk(rs, p)
					if err != nil {
						t.Fatalf("seed %d step %d: %s: %v", seed, step, name, err)
					}
					o6, err := Walk(rs, p6)
					if err != nil {
						t.Fatalf("seed %d step %d: %s: %v", seed, step, name, err)
					}
					if o4.Accept != o6.Accept {
						t.Fatalf("seed %d step %d (%s): %s ruleset: %s accept=%v but its IPv6 twin %s accept=%v\nIPv4 trace %v\nIPv6 trace %v",
							seed, step, what, name, p, o4.Accept, p6, o6.Accept, o4.Trace, o6.Trace)
					}
				}
			}
		}
	}
	if packets < 10000 {
		t.Errorf("only %d packets had an IPv6 twin; want at least 10000", packets)
	}
	t.Logf("%d IPv4 packets and their IPv6 twins decided alike", packets)
}

// mirror46 maps an IPv4 address into fd00:46::/96 (its low 32 bits).
func mirror46(a netip.Addr) netip.Addr {
	b := a.As4()
	return netip.AddrFrom16([16]byte{0: 0xfd, 2: 0x00, 3: 0x46, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
}

func mirrorPrefix(p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(mirror46(p.Addr()), 96+p.Bits())
}

// mirrorNets keeps the IPv4 nets and adds their twins (dual: a set may
// hold both families); IPv6 nets are dropped.
func mirrorNets(nets []string, dual bool) (v4, v6 []string) {
	for _, n := range nets {
		if p, err := netip.ParsePrefix(n); err == nil && p.Addr().Is4() {
			v4 = append(v4, n)
			v6 = append(v6, mirrorPrefix(p).String())
		} else if a, err := netip.ParseAddr(n); err == nil && a.Is4() {
			v4 = append(v4, n)
			v6 = append(v6, mirror46(a).String())
		}
	}
	return v4, v6
}

func both(nets []string) []string {
	v4, v6 := mirrorNets(nets, true)
	return slices.Concat(v4, v6)
}

var icmpTwin = map[int]int{8: 128, 0: 129, 3: 1}

func clone[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mirrorState(t *testing.T, s *policy.State) *policy.State {
	t.Helper()
	m := clone(t, s)
	for _, e := range m.Endpoints {
		e.Spec.IPNetworks = both(e.Spec.IPNetworks)
	}
	for _, h := range m.HostEndpoints {
		h.Spec.ExpectedIPs = both(h.Spec.ExpectedIPs)
	}
	for _, n := range m.GlobalNetworkSets {
		n.Spec.Nets = both(n.Spec.Nets)
	}
	for _, n := range m.NetworkSets {
		n.Spec.Nets = both(n.Spec.Nets)
	}
	var pools []*api.IPPool
	for _, p := range m.Pools {
		if c := netip.MustParsePrefix(p.Spec.CIDR); c.Addr().Is4() {
			twin := clone(t, p)
			twin.Name += "-twin"
			twin.Spec.CIDR = mirrorPrefix(c).String()
			pools = append(pools, p, twin)
		}
	}
	m.Pools = pools
	for _, p := range m.Policies {
		p.Spec.Ingress, p.Spec.Egress = mirrorRules(t, p.Spec.Ingress), mirrorRules(t, p.Spec.Egress)
	}
	for _, p := range m.GlobalPolicies {
		p.Spec.Ingress, p.Spec.Egress = mirrorRules(t, p.Spec.Ingress), mirrorRules(t, p.Spec.Egress)
	}
	return m
}

// ruleFamily is the one family a rule can match (0: both).
func ruleFamily(r api.Rule) int {
	switch {
	case r.IPVersion != nil:
		return *r.IPVersion
	case r.Protocol != nil && *r.Protocol == "ICMP":
		return 4
	case r.Protocol != nil && *r.Protocol == "ICMPv6":
		return 6
	}
	// The first net says (a rule's nets are all of one family).
	if nets := slices.Concat(r.Source.Nets, r.Source.NotNets, r.Destination.Nets, r.Destination.NotNets); len(nets) > 0 {
		if isIPv6Net(nets[0]) {
			return 6
		}
		return 4
	}
	return 0
}

// mirrorRules keeps the rules of both families, drops the IPv6-only ones
// and follows each IPv4-only rule with its IPv6 twin.
func mirrorRules(t *testing.T, rules []api.Rule) []api.Rule {
	var out []api.Rule
	for _, r := range rules {
		switch ruleFamily(r) {
		case 0:
			out = append(out, r)
		case 4:
			twin := clone(t, r)
			if twin.IPVersion != nil {
				twin.IPVersion = Ptr(6)
			}
			if twin.Protocol != nil && *twin.Protocol == "ICMP" {
				twin.Protocol = Proto("ICMPv6")
			}
			for _, f := range []*api.ICMPFields{twin.ICMP, twin.NotICMP} {
				if f != nil && f.Type != nil {
					f.Type = Ptr(icmpTwin[*f.Type])
				}
			}
			for _, e := range []*api.EntityRule{&twin.Source, &twin.Destination} {
				_, e.Nets = mirrorNets(e.Nets, false)
				_, e.NotNets = mirrorNets(e.NotNets, false)
			}
			out = append(out, r, twin)
		}
	}
	return out
}

// mirrorPacket is p's IPv6 twin; false when p has none (not IPv4, or an
// ICMP type without a twin).
func mirrorPacket(p Packet) (Packet, bool) {
	if p.Family != 4 || !p.Src.Is4() || !p.Dst.Is4() {
		return Packet{}, false
	}
	q := p
	q.Family, q.Src, q.Dst = 6, mirror46(p.Src), mirror46(p.Dst)
	if p.Proto == 1 {
		tw, ok := icmpTwin[int(p.ICMPType)]
		if !ok {
			return Packet{}, false
		}
		q.Proto, q.ICMPType = 58, uint8(tw)
	}
	return q, true
}
