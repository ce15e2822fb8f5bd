package flowlog

import (
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// TestReplayAgreesWithOracle: on random states and packets, the flow
// replay accepts exactly what the packet-walk oracle accepts (its
// decisions all allow, none drops), and every decision of a packet the
// oracle drops names where: the last one denies.
func TestReplayAgreesWithOracle(t *testing.T) {
	n := 0
	for seed := uint64(1); seed <= 8; seed++ {
		g := NewRandom(seed)
		s := g.State()
		for step := 0; step < 15; step++ {
			what := g.Mutate(s)
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range g.Packets(s, 60) {
				if p.Ct != 0 && p.Ct != policy.CtNew || p.Mark != 0 {
					continue // the replay is of a flow's first packet
				}
				want, err := Walk(rs, p)
				if err != nil {
					t.Fatalf("seed %d step %d (%s): oracle: %v", seed, step, what, err)
				}
				pk := packet{hook: p.Hook, family: p.Family, iif: p.IIf, oif: p.OIf, src: p.Src, dst: p.Dst, proto: p.Proto,
					sport: p.SPort, dport: p.DPort, icmpType: p.ICMPType, icmpCode: p.ICMPCode, daddrLocal: p.DaddrLocal}
				ds, err := replay(rs, pk)
				if err != nil {
					t.Fatalf("seed %d step %d (%s) %s: replay: %v", seed, step, what, p, err)
				}
				got := true
				for _, d := range ds {
					got = got && d.allow
				}
				if got != want.Accept {
					t.Fatalf("seed %d step %d (%s) %s: replay accepts %v (decisions %+v), the oracle %v (trace %v)",
						seed, step, what, p, got, ds, want.Accept, want.Trace)
				}
				if !want.Accept && len(ds) == 0 {
					t.Fatalf("seed %d step %d (%s) %s: dropped, but the replay names no decision", seed, step, what, p)
				}
				n++
			}
		}
	}
	t.Logf("%d packets agree", n)
}
