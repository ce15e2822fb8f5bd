package policy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// TestTiers: Calico's tier semantics, as the ingress chain of web (tby1)
// and db (tby2) show them. Tiers apply by order (then name, unordered
// last); within a tier its policies by order; a tier counts for an
// endpoint only when one of its policies selects it; at its end a tier's
// defaultAction applies: Deny drops, Pass goes to the next tier (or, after
// the last, the profiles); a Pass rule skips the rest of its tier.
func TestTiers(t *testing.T) {
	const (
		jump      = "jump "
		ret       = "meta mark & 0x00010000 == 0x00010000 return"
		ifNotPass = "meta mark & 0x00020000 == 0x00000000 "
		clearPass = "meta mark set meta mark & 0xfffdffff"
	)
	allowAll := []api.Rule{{Action: "Allow"}}
	pass := []api.Rule{{Action: "Pass", Protocol: Proto("TCP")}}
	web, db := "app == 'web'", "app == 'db'"
	tiers := []*api.Tier{
		Tier("security", Ptr(100.0), ""), // defaultAction defaults to Deny
		Tier("platform", Ptr(50.0), "Pass"),
		Tier("t-b", Ptr(5.0), "Pass"),
		Tier("t-a", Ptr(5.0), "Pass"),
		Tier("t-z", nil, "Pass"),
	}
	tests := []struct {
		name    string
		globals []*api.GlobalNetworkPolicy
		profile bool // web uses profile net
		want    map[string][]string
	}{
		{
			name: "a tier comes before the default tier whatever the policy order; its default Deny ends evaluation",
			globals: []*api.GlobalNetworkPolicy{
				GNP("d", 0, web, allowAll, nil),
				InTier("security", GNP("p", 99, web, nil, nil, "Ingress")),
			},
			want: map[string][]string{"tw-tby1": {jump + "gpi-security.p", ret, "drop"}},
		},
		{
			name: "a Pass rule hands over to the next tier, which starts afresh",
			globals: []*api.GlobalNetworkPolicy{
				GNP("d", 0, web, allowAll, nil),
				InTier("security", GNP("p", 1, web, pass, nil)),
				InTier("security", GNP("q", 2, web, allowAll, nil)),
			},
			want: map[string][]string{"tw-tby1": {
				jump + "gpi-security.p", ret, ifNotPass + jump + "gpi-security.q", ret, ifNotPass + "drop", clearPass,
				jump + "gpi-d", ret, "drop",
			}},
		},
		{
			name: "a Pass tier's end goes on to the next tier",
			globals: []*api.GlobalNetworkPolicy{
				GNP("d", 0, web, allowAll, nil),
				InTier("platform", GNP("p", 1, web, nil, nil, "Ingress")),
			},
			want: map[string][]string{"tw-tby1": {jump + "gpi-platform.p", ret, jump + "gpi-d", ret, "drop"}},
		},
		{
			name: "after the last tier passes, the profiles decide",
			globals: []*api.GlobalNetworkPolicy{
				InTier("platform", GNP("p", 1, web, pass, nil)),
			},
			profile: true,
			want:    map[string][]string{"tw-tby1": {jump + "gpi-platform.p", ret, jump + "pri-net", ret, "drop"}},
		},
		{
			name: "a tier applies only to the endpoints its policies select",
			globals: []*api.GlobalNetworkPolicy{
				GNP("d", 0, "all()", allowAll, nil),
				InTier("security", GNP("p", 1, db, nil, nil, "Ingress")),
			},
			want: map[string][]string{
				"tw-tby1": {jump + "gpi-d", ret, "drop"},
				"tw-tby2": {jump + "gpi-security.p", ret, "drop"},
			},
		},
		{
			name: "tiers of equal order by name, unordered ones last",
			globals: []*api.GlobalNetworkPolicy{
				InTier("t-z", GNP("p", 1, web, nil, nil, "Ingress")),
				InTier("t-b", GNP("p", 1, web, nil, nil, "Ingress")),
				InTier("t-a", GNP("p", 1, web, nil, nil, "Ingress")),
			},
			want: map[string][]string{"tw-tby1": {jump + "gpi-t-a.p", ret, jump + "gpi-t-b.p", ret, jump + "gpi-t-z.p", ret, "drop"}},
		},
		{
			name: "the built-in tiers exist without a Tier object: kube-admin (1000, Pass) before default, kube-baseline (1e7, Pass) after",
			globals: []*api.GlobalNetworkPolicy{
				InTier("kube-baseline", GNP("p", 1, web, nil, nil, "Ingress")),
				InTier("default", GNP("d", 1, web, pass, nil)),
				InTier("kube-admin", GNP("p", 1, web, nil, nil, "Ingress")),
			},
			profile: true,
			want: map[string][]string{"tw-tby1": {
				jump + "gpi-kube-admin.p", ret, jump + "gpi-default.d", ret, ifNotPass + "drop", clearPass,
				jump + "gpi-kube-baseline.p", ret, jump + "pri-net", ret, "drop",
			}},
		},
		{
			name: "a policy naming a missing tier is quarantined, first",
			globals: []*api.GlobalNetworkPolicy{
				GNP("d", 0, web, allowAll, nil),
				InTier("nope", GNP("p", 1, web, allowAll, nil)),
			},
			want: map[string][]string{
				"gpi-nope.p": {"drop"},
				"tw-tby1":    {jump + "gpi-nope.p", ret, "drop"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ruleState()
			s.Tiers, s.GlobalPolicies = tiers, tc.globals
			if tc.profile {
				s.Profiles = []*api.Profile{CNIProfile("net")}
				s.Endpoints[0].Spec.Profiles = []string{"net"}
			}
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			for chain, want := range tc.want {
				if diff := cmp.Diff(want, chainRules(t, rs, chain)); diff != "" {
					t.Errorf("chain %s (-want +got):\n%s", chain, diff)
				}
			}
			if err := Check(rs); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestNamespacedPolicyInTier: a NetworkPolicy takes part in its tier like
// a global one.
func TestNamespacedPolicyInTier(t *testing.T) {
	s := ruleState()
	s.Tiers = []*api.Tier{Tier("security", Ptr(100.0), "Deny")}
	p := NP("default", "security.p", 1, "app == 'web'", nil, nil, "Ingress")
	p.Spec.Tier = "security"
	s.Policies = []*api.NetworkPolicy{p, NP("default", "d", 0, "app == 'web'", []api.Rule{{Action: "Allow"}}, nil)}
	rs, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"jump pi-default/security.p", "meta mark & 0x00010000 == 0x00010000 return", "drop"}
	if diff := cmp.Diff(want, chainRules(t, rs, "tw-tby1")); diff != "" {
		t.Errorf("tw-tby1 (-want +got):\n%s", diff)
	}
}
