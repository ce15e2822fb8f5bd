package policy_test

import (
	"encoding/json"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// TestStatesAreWellFormed checks the structural invariants of every
// representative state's ruleset.
func TestStatesAreWellFormed(t *testing.T) {
	for _, name := range policytest.StateNames() {
		rs, err := policy.Compile(policytest.States()[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := policytest.Check(rs); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzCompile feeds arbitrary policy specs (JSON) to the compiler, as a
// namespaced policy, a global policy and a profile: it must compile them
// to a well-formed ruleset or reject them with an error, never panic.
func FuzzCompile(f *testing.F) {
	for _, s := range policytest.States() {
		for _, p := range s.Policies {
			b, _ := json.Marshal(p.Spec)
			f.Add(b)
		}
		for _, p := range s.GlobalPolicies {
			b, _ := json.Marshal(p.Spec)
			f.Add(b)
		}
	}
	f.Add([]byte(`{"selector":"all()","ingress":[{"action":"Allow","protocol":"TCP","source":{"ports":["http",80,"1:2"],"notPorts":["x"]}}]}`))
	f.Add([]byte(`{"types":["Egress"],"egress":[{"action":"Pass","ipVersion":6,"destination":{"nets":["::/0"],"notNets":["0.0.0.0/0"]}}]}`))
	f.Add([]byte(`{"ingress":[{"action":"Deny","protocol":1,"icmp":{"type":8,"code":0},"notICMP":{"type":254}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var spec api.NetworkPolicySpec
		if err := json.Unmarshal(data, &spec); err != nil {
			return
		}
		s := ruleState()
		s.Policies = []*api.NetworkPolicy{{ObjectMeta: api.ObjectMeta{Name: "fuzz", Namespace: "default"}, Spec: spec}}
		s.GlobalPolicies = []*api.GlobalNetworkPolicy{{ObjectMeta: api.ObjectMeta{Name: "fuzz"}, Spec: api.GlobalNetworkPolicySpec{
			Order: spec.Order, Selector: spec.Selector, Types: spec.Types, Ingress: spec.Ingress, Egress: spec.Egress,
		}}}
		s.Profiles = []*api.Profile{{ObjectMeta: api.ObjectMeta{Name: "fuzz"}, Spec: api.ProfileSpec{Ingress: spec.Ingress, Egress: spec.Egress}}}
		for _, e := range s.Endpoints {
			e.Spec.Profiles = []string{"fuzz"}
		}
		rs, err := policy.Compile(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := policytest.Check(rs); err != nil {
			t.Fatalf("ill-formed ruleset: %v\n%s", err, rs.Render())
		}
		_ = rs.Render()
	})
}

// TestRandomStatesCompile: random valid states (and every state along a
// random walk) compile to well-formed rulesets, the same way every time.
func TestRandomStatesCompile(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		g := policytest.NewRandom(seed)
		s := g.State()
		for step := 0; step < 50; step++ {
			what := g.Mutate(s)
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatalf("seed %d step %d (%s): %v", seed, step, what, err)
			}
			if err := policytest.Check(rs); err != nil {
				t.Fatalf("seed %d step %d (%s): %v\n%s", seed, step, what, err, rs.Render())
			}
			again, err := policy.Compile(s)
			if err != nil || again.Render() != rs.Render() {
				t.Fatalf("seed %d step %d: compiling twice differs (%v)", seed, step, err)
			}
		}
	}
}
