package nft

import (
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// TestPrivilegedSplitFamiliesApplies: the per-family form of every
// representative state (chains named "<chain>:4"/":6", per-family dispatch
// maps), that form with its runs merged (policy.MergeRules) and with its
// endpoint chains shared (policy.ShareEndpointChains), is
// accepted by the kernel and reads back as written; moving from
// the reference form to it and back ends where a fresh apply does.
func TestPrivilegedSplitFamiliesApplies(t *testing.T) {
	requireRoot(t)
	for _, name := range StateNames() {
		t.Run(name, func(t *testing.T) {
			ns := newNS(t, "tbysf-")
			d := ns.driver()
			ref := mustCompile(t, States()[name])
			split := policy.SplitFamilies(ref)
			mustApply(t, d, split)
			d.valid = false
			if ch := mustApply(t, d, split); ch.Committed || !ch.Resynced {
				t.Errorf("Apply after reading the kernel back: %+v, want no commit", ch)
			}
			flat := policy.MergeRules(split)
			mustApply(t, d, flat)
			d.valid = false
			if ch := mustApply(t, d, flat); ch.Committed || !ch.Resynced {
				t.Errorf("merged form: Apply after reading the kernel back: %+v, want no commit", ch)
			}
			shared := policy.ShareEndpointChains(split)
			mustApply(t, d, shared)
			d.valid = false
			if ch := mustApply(t, d, shared); ch.Committed || !ch.Resynced {
				t.Errorf("shared form: Apply after reading the kernel back: %+v, want no commit", ch)
			}
			mustApply(t, d, ref)
			d.valid = false
			if ch := mustApply(t, d, ref); ch.Committed {
				t.Errorf("back to the reference form: re-reading the kernel led to %+v", ch)
			}
		})
	}
}
