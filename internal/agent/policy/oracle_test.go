package policy_test

import (
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// TestOracleKnownVerdicts: the packet-walk oracle gives, on representative
// states, the verdicts Calico's model says (so it can judge other
// compilations of a state).
func TestOracleKnownVerdicts(t *testing.T) {
	a := netip.MustParseAddr
	web, db, outside, monitor := a("10.65.0.2"), a("10.65.0.3"), a("192.0.2.7"), a("10.65.9.5")
	tcp := func(hook policy.HookPoint, iif, oif string, src, dst netip.Addr, dport uint16) Packet {
		return Packet{Hook: hook, Family: 4, IIf: iif, OIf: oif, Src: src, Dst: dst, Proto: 6, SPort: 40000, DPort: dport}
	}
	fwd := policy.HookForward
	tests := []struct {
		state string
		name  string
		p     Packet
		want  bool
	}{
		{"cni-network", "web to db: the profile admits its network", tcp(fwd, IfWeb, IfDB, web, db, 5432), true},
		{"cni-network", "outside to db: not of the network", tcp(fwd, "eth0", IfDB, outside, db, 5432), false},
		{"cni-network", "an established flow continues", func() Packet {
			p := tcp(fwd, "eth0", IfDB, outside, db, 5432)
			p.Ct = policy.CtEstablished
			return p
		}(), true},
		{"cni-network", "an invalid packet from a workload is dropped", func() Packet {
			p := tcp(fwd, IfWeb, "eth0", web, outside, 80)
			p.Ct = policy.CtInvalid
			return p
		}(), false},
		{"cni-network", "an interface no endpoint owns sends nothing", tcp(fwd, "tby000unknown", "eth0", web, outside, 80), false},
		{"cni-network", "anti-spoofing: web sending as db", tcp(policy.HookPrerouting, IfWeb, "", db, outside, 80), false},
		{"cni-network", "anti-spoofing: web sending as itself", tcp(policy.HookPrerouting, IfWeb, "", web, outside, 80), true},
		{"cni-network", "workload to host: Drop by default", tcp(policy.HookInput, IfWeb, "", web, a("10.0.0.1"), 22), false},
		{"cni-network", "host to workload", tcp(policy.HookOutput, "", IfWeb, a("10.0.0.1"), web, 80), true},
		{"tiers", "web to db 5432: security passes it, the default tier allows it", tcp(fwd, IfWeb, IfDB, web, db, 5432), true},
		{"tiers", "web to db 80: the security tier's end denies it", tcp(fwd, IfWeb, IfDB, web, db, 80), false},
		{"tiers", "monitoring to db: the platform tier allows it first", tcp(fwd, "eth0", IfDB, monitor, db, 80), true},
		{"tiers", "monitoring to web: platform allows it", tcp(fwd, "eth0", IfWeb, monitor, web, 80), true},
		{"tiers", "kube-admin denies 10.65.66.0/24 to web", tcp(fwd, "eth0", IfWeb, a("10.65.66.1"), web, 80), false},
		{"tiers", "db to web: no tier selects web for this, its profile decides", tcp(fwd, IfDB, IfWeb, db, web, 80), true},
	}
	for _, tc := range tests {
		t.Run(tc.state+"/"+tc.name, func(t *testing.T) {
			rs, err := policy.Compile(States()[tc.state])
			if err != nil {
				t.Fatal(err)
			}
			got, err := Walk(rs, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if got.Accept != tc.want {
				t.Errorf("%s: accept = %v, want %v (trace %v)", tc.p, got.Accept, tc.want, got.Trace)
			}
		})
	}
}

// TestOracleWalksRandomRulesets: every ruleset of a random walk over
// states can be walked by any packet without reading what the packet does
// not have (an IPv4 field of an IPv6 packet, a port of an ICMP packet),
// dangling references or too deep jumps.
func TestOracleWalksRandomRulesets(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		g := NewRandom(seed)
		s := g.State()
		for step := 0; step < 30; step++ {
			what := g.Mutate(s)
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range g.Packets(s, 100) {
				if _, err := Walk(rs, p); err != nil {
					t.Fatalf("seed %d step %d (%s): %v", seed, step, what, err)
				}
			}
		}
	}
}
