package nft

import (
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// TestPrivilegedDenyLogIdempotent: a flat ruleset with logged denies (flow
// logs on) reads back as written, so the driver finds nothing to do, and
// the kernel holds the rate-limited NFLOG rule.
func TestPrivilegedDenyLogIdempotent(t *testing.T) {
	requireRoot(t)
	for _, name := range []string{"cni-network", "tiers", "host-endpoints"} {
		t.Run(name, func(t *testing.T) {
			ns := newNS(t, "tbydl-")
			d := ns.driver()
			dl := &policy.DenyLogger{Group: 20, Rate: 200}
			rs := dl.Apply(policy.Flatten(mustCompile(t, States()[name])))
			mustApply(t, d, rs)
			d.valid = false
			if ch := mustApply(t, d, rs); ch.Committed || !ch.Resynced {
				t.Errorf("Apply after reading the kernel back: %+v, want no commit (what we wrote reads back differently)", ch)
			}
			out := ns.nft(t, "list", "chain", "inet", policy.TableName, policy.LogDenyChain)
			for _, want := range []string{"limit rate 200/second burst 200 packets", `log prefix "tabby-deny" group 20`, "drop"} {
				if !strings.Contains(out, want) {
					t.Errorf("chain %s lacks %q:\n%s", policy.LogDenyChain, want, out)
				}
			}
		})
	}
}
