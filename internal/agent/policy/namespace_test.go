package policy_test

import (
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// TestNamespaceLabelsReachSelectors: a namespaceSelector matches the
// labels of the endpoint's Namespace object, in a rule and in a global
// policy's spec.namespaceSelector; every namespace, with an object or
// without, has kubernetes.io/metadata.name and projectcalico.org/name.
func TestNamespaceLabelsReachSelectors(t *testing.T) {
	a := netip.MustParseAddr
	webIP, dbIP := a("10.65.0.2"), a("10.65.0.3")
	pkt := Packet{Hook: policy.HookForward, Family: 4, IIf: "tby1", OIf: "tby2", Src: webIP, Dst: dbIP, Proto: 6, SPort: 40000, DPort: 80}
	state := func(nsLabels map[string]string, from string, global bool) *policy.State {
		s := &policy.State{
			Node: Node,
			Endpoints: []*api.WorkloadEndpoint{
				WEP(Node, "pay", "web", "tby1", []string{"10.65.0.2/32"}, map[string]string{"app": "web"}, "net"),
				WEP(Node, "default", "db", "tby2", []string{"10.65.0.3/32"}, map[string]string{"app": "db"}, "net"),
			},
			Profiles: []*api.Profile{CNIProfile("net")},
		}
		if nsLabels != nil {
			ns := &api.Namespace{ObjectMeta: api.ObjectMeta{Name: "pay", Labels: nsLabels}}
			api.SetDefaults(ns)
			s.Namespaces = []*api.Namespace{ns}
		}
		allow := []api.Rule{{Action: "Allow", Source: api.EntityRule{NamespaceSelector: from}}}
		if global {
			// Egress of the endpoints of matching namespaces: deny.
			g := GNP("deny-out", 1, "all()", nil, []api.Rule{{Action: "Deny"}}, "Egress")
			g.Spec.NamespaceSelector = from
			s.GlobalPolicies = []*api.GlobalNetworkPolicy{g}
		} else {
			s.Policies = []*api.NetworkPolicy{NP("default", "db", 1, "app == 'db'", allow, nil, "Ingress")}
		}
		return s
	}
	tests := []struct {
		name     string
		nsLabels map[string]string // nil: no Namespace object
		from     string
		global   bool
		want     bool
	}{
		{"rule: the namespace's label matches", map[string]string{"team": "payments"}, "team == 'payments'", false, true},
		{"rule: another value does not", map[string]string{"team": "risk"}, "team == 'payments'", false, false},
		{"rule: no Namespace object, no label", nil, "team == 'payments'", false, false},
		{"rule: kubernetes.io/metadata.name without an object", nil, "kubernetes.io/metadata.name == 'pay'", false, true},
		{"rule: projectcalico.org/name still works", map[string]string{"team": "payments"}, "projectcalico.org/name == 'pay'", false, true},
		{"global policy: namespaceSelector on labels selects web", map[string]string{"team": "payments"}, "team == 'payments'", true, false},
		{"global policy: unmatched namespace is not selected", map[string]string{"team": "risk"}, "team == 'payments'", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := policy.Compile(state(tc.nsLabels, tc.from, tc.global))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Walk(rs, pkt)
			if err != nil {
				t.Fatal(err)
			}
			if got.Accept != tc.want {
				t.Errorf("web (ns pay) to db: accept = %v, want %v (trace %v)", got.Accept, tc.want, got.Trace)
			}
		})
	}
}
