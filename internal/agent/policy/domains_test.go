package policy_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

func domainState() *policy.State {
	web := WEP(Node, "default", "web", "tbyweb", []string{"10.65.0.2/32"}, map[string]string{"app": "web"}, "calico")
	gns := GNS("ext", map[string]string{"role": "ext"}, "198.51.100.0/24")
	gns.Spec.AllowedEgressDomains = []string{"db.example.net", "*.db.example.net"}
	return &policy.State{
		Node:      Node,
		Endpoints: []*api.WorkloadEndpoint{web},
		Profiles:  []*api.Profile{CNIProfile("calico")},
		Pools:     []*api.IPPool{Pool("default", "10.65.0.0/16", false)},
		GlobalPolicies: []*api.GlobalNetworkPolicy{GNP("dns", 1, "app == 'web'", nil, []api.Rule{
			{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("443"), Domains: []string{"API.example.com.", "*.example.org"}}},
			{Action: "Allow", Destination: api.EntityRule{Selector: "role == 'ext'"}},
		}, "Egress")},
		GlobalNetworkSets: []*api.GlobalNetworkSet{gns},
		DNS:               &policy.DNSPolicy{Redirect4: netip.MustParseAddrPort("192.0.2.10:1053")},
	}
}

// TestCompileDomains: a rule's domains become a match on a learned set
// per family (flags timeout, no elements, named after the canonical
// patterns); a network set's allowedEgressDomains add an alternative to
// the selector's addresses; DNS from workloads is DNATed to the
// forwarder and accepted to the host. Flatten keeps all of it.
func TestCompileDomains(t *testing.T) {
	rs, err := policy.Compile(domainState())
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []struct {
		name string
		rs   *policy.Ruleset
	}{{"reference", rs}, {"flat", policy.Flatten(rs)}} {
		t.Run(form.name, func(t *testing.T) {
			if err := Check(form.rs); err != nil {
				t.Fatalf("Check: %v", err)
			}
			var rule, set []*policy.Set
			for _, s := range form.rs.DomainSets() {
				if strings.Join(s.Domains, ",") == "*.example.org,api.example.com" {
					rule = append(rule, s)
				}
				if strings.Join(s.Domains, ",") == "*.db.example.net,db.example.net" {
					set = append(set, s)
				}
			}
			if len(rule) != 2 || len(set) != 2 {
				t.Fatalf("learned sets of the rule: %d, of the network set: %d; want 2 and 2 (one per family)\n%s", len(rule), len(set), form.rs.Render())
			}
			text := form.rs.Render()
			for _, s := range append(rule, set...) {
				if !strings.Contains(text, "daddr @"+s.Name) {
					t.Errorf("no rule reads learned set %s\n%s", s.Name, text)
				}
				if !strings.Contains(s.Render(), "flags timeout") {
					t.Errorf("set %s is not a timeout set:\n%s", s.Name, s.Render())
				}
			}
			for _, want := range []string{`iifname "tby*" meta l4proto udp th dport 53 dnat ip to 192.0.2.10:1053`, `meta l4proto tcp th dport 53 dnat ip to 192.0.2.10:1053`, "meta l4proto udp th dport 1053 ip daddr 192.0.2.10 accept",
				`meta nfproto ipv4 iifname "tby*" meta l4proto udp th dport 53 ct state new jump from-wl`} {
				if !strings.Contains(text, want) {
					t.Errorf("ruleset has no %q\n%s", want, text)
				}
			}
		})
	}
}

// TestCompileDomainsRefused: domains where they cannot apply quarantine
// the policy with the field named.
func TestCompileDomainsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule api.Rule
		dir  string
		want string
	}{
		{"ingress", api.Rule{Action: "Allow", Destination: api.EntityRule{Domains: []string{"a.com"}}}, "Ingress", "spec.ingress[0].destination.domains"},
		{"deny", api.Rule{Action: "Deny", Destination: api.EntityRule{Domains: []string{"a.com"}}}, "Egress", "spec.egress[0].destination.domains"},
		{"bad", api.Rule{Action: "Allow", Destination: api.EntityRule{Domains: []string{"*.*.a.com"}}}, "Egress", `destination.domains[0]: "*.*.a.com"`},
		{"source", api.Rule{Action: "Allow", Source: api.EntityRule{Domains: []string{"a.com"}}}, "Egress", "spec.egress[0].source.domains"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := domainState()
			var in, out []api.Rule
			if tc.dir == "Ingress" {
				in = []api.Rule{tc.rule}
			} else {
				out = []api.Rule{tc.rule}
			}
			s.GlobalPolicies = []*api.GlobalNetworkPolicy{GNP("bad", 1, "app == 'web'", in, out, tc.dir)}
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs.Quarantined) != 1 || !strings.Contains(rs.Quarantined[0].Reason, tc.want) {
				t.Fatalf("quarantined = %+v, want one naming %q", rs.Quarantined, tc.want)
			}
		})
	}
}

// TestCompileDomainsResolvers: with resolvers named, only DNS to them is
// redirected (and judged before the redirect); a family none of them is
// of is not redirected at all.
func TestCompileDomainsResolvers(t *testing.T) {
	s := domainState()
	s.DNS.Redirect6 = netip.MustParseAddrPort("[fd00::10]:1053")
	s.DNS.Resolvers = []netip.Addr{netip.MustParseAddr("192.0.2.53")}
	rs, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	text := rs.Render()
	for _, want := range []string{
		`meta nfproto ipv4 iifname "tby*" meta l4proto udp th dport 53 ip daddr 192.0.2.53 dnat ip to 192.0.2.10:1053`,
		`meta nfproto ipv4 iifname "tby*" meta l4proto udp th dport 53 ip daddr 192.0.2.53 ct state new jump from-wl`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	if strings.Contains(text, "dnat ip6") {
		t.Errorf("IPv6 DNS redirected though no resolver is IPv6:\n%s", text)
	}
}

func TestDomainsChanged(t *testing.T) {
	plain := GNS("a", nil, "192.0.2.0/24")
	withDoms := GNS("a", nil, "192.0.2.0/24")
	withDoms.Spec.AllowedEgressDomains = []string{"x.com"}
	for _, tc := range []struct {
		name string
		ch   policy.Change
		want bool
	}{
		{"plain", policy.Change{Old: plain, New: plain}, false},
		{"added", policy.Change{Old: plain, New: withDoms}, true},
		{"deleted", policy.Change{Old: withDoms}, true},
	} {
		if got := policy.DomainsChanged(tc.ch); got != tc.want {
			t.Errorf("%s: DomainsChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCompileDomainsWithoutForwarder: rules with domains on an agent that
// runs no forwarder compile (they match nothing) with a warning saying so.
func TestCompileDomainsWithoutForwarder(t *testing.T) {
	s := domainState()
	s.DNS = nil
	rs, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Warnings) == 0 || !strings.Contains(strings.Join(rs.Warnings, "\n"), "runs no DNS forwarder") {
		t.Fatalf("warnings = %q, want one saying no forwarder runs", rs.Warnings)
	}
	if strings.Contains(rs.Render(), "dns-redirect") {
		t.Error("DNS is redirected without a forwarder")
	}
}
