package policy_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// TestBadPoliciesAreQuarantined: a policy or profile that cannot be
// compiled no longer fails the compile. It is quarantined, with a reason
// naming the object, the field and the value, and its chains drop
// everything — even when it selects nothing on this node.
func TestBadPoliciesAreQuarantined(t *testing.T) {
	withRule := func(r api.Rule) func(*policy.State) {
		return func(s *policy.State) {
			s.Policies = []*api.NetworkPolicy{NP("default", "p", 1, "all()", []api.Rule{r}, nil)}
		}
	}
	withGNP := func(f func(*api.GlobalNetworkPolicySpec)) func(*policy.State) {
		return func(s *policy.State) {
			g := GNP("g", 1, "", []api.Rule{{Action: "Allow"}}, nil)
			f(&g.Spec)
			s.GlobalPolicies = []*api.GlobalNetworkPolicy{g}
		}
	}
	const np, gnp = "NetworkPolicy/default/p", "GlobalNetworkPolicy/g"
	tests := []struct {
		name   string
		change func(*policy.State)
		id     string   // the quarantined object
		want   []string // substrings of its reason
	}{
		{"action", withRule(api.Rule{Action: "Reject"}), np, []string{"NetworkPolicy default/p", "spec.ingress[0].action", `"Reject"`}},
		{"ipVersion", withRule(api.Rule{Action: "Allow", IPVersion: Ptr(5)}), np, []string{"ipVersion", "5"}},
		{"protocol", withRule(api.Rule{Action: "Allow", Protocol: Proto("bogus")}), np, []string{"protocol", `"bogus"`}},
		{"protocol zero", withRule(api.Rule{Action: "Allow", Protocol: Proto("0")}), np, []string{"protocol", `"0"`}},
		{"notProtocol", withRule(api.Rule{Action: "Allow", NotProtocol: Proto("256")}), np, []string{"notProtocol", `"256"`}},
		{"icmp without protocol", withRule(api.Rule{Action: "Allow", ICMP: &api.ICMPFields{Type: Ptr(8)}}), np, []string{"icmp", "ICMP"}},
		{"icmp type range", withRule(api.Rule{Action: "Allow", Protocol: Proto("ICMP"), ICMP: &api.ICMPFields{Type: Ptr(255)}}), np, []string{"icmp.type", "255"}},
		{"icmp code range", withRule(api.Rule{Action: "Allow", Protocol: Proto("ICMP"), NotICMP: &api.ICMPFields{Type: Ptr(3), Code: Ptr(256)}}), np, []string{"notICMP.code", "256"}},
		{"icmp code without type", withRule(api.Rule{Action: "Allow", Protocol: Proto("ICMP"), ICMP: &api.ICMPFields{Code: Ptr(1)}}), np, []string{"icmp.code"}},
		{"ICMP in IPv6", withRule(api.Rule{Action: "Allow", Protocol: Proto("ICMP"), IPVersion: Ptr(6)}), np, []string{"protocol", "ICMP", "IPv6"}},
		{"ports without protocol", withRule(api.Rule{Action: "Allow", Destination: api.EntityRule{Ports: Ports("80")}}), np, []string{"destination.ports", "protocol"}},
		{"ports with ICMP", withRule(api.Rule{Action: "Allow", Protocol: Proto("ICMP"), Source: api.EntityRule{NotPorts: Ports("80")}}), np, []string{"source.notPorts"}},
		{"bad port", withRule(api.Rule{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("80:70")}}), np, []string{"destination.ports[0]", `"80:70"`}},
		{"bad net", withRule(api.Rule{Action: "Allow", Source: api.EntityRule{Nets: []string{"10.0.0.0/33"}}}), np, []string{"source.nets[0]", `"10.0.0.0/33"`}},
		{"bad notNet", withRule(api.Rule{Action: "Allow", Destination: api.EntityRule{NotNets: []string{"", "bogus"}}}), np, []string{"destination.notNets[0]"}},
		{"nets families disjoint", withRule(api.Rule{Action: "Allow", Source: api.EntityRule{Nets: []string{"10.0.0.0/8"}}, Destination: api.EntityRule{Nets: []string{"fd00::/8"}}}), np, []string{"nets", "IP version"}},
		{"nets vs ipVersion", withRule(api.Rule{Action: "Allow", IPVersion: Ptr(6), Source: api.EntityRule{Nets: []string{"10.0.0.0/8"}}}), np, []string{"nets", "IP version"}},
		{"selector", withRule(api.Rule{Action: "Allow", Source: api.EntityRule{Selector: "app =="}}), np, []string{"source.selector", `"app =="`}},
		{"notSelector", withRule(api.Rule{Action: "Allow", Destination: api.EntityRule{NotSelector: "has("}}), np, []string{"destination.notSelector"}},
		{"namespaceSelector", withRule(api.Rule{Action: "Allow", Source: api.EntityRule{NamespaceSelector: "a b"}}), np, []string{"source.namespaceSelector"}},
		{"serviceAccounts selector", withRule(api.Rule{Action: "Allow", Source: api.EntityRule{ServiceAccounts: &api.ServiceAccountMatch{Selector: "!"}}}), np, []string{"serviceAccounts.selector"}},
		{"http", withRule(api.Rule{Action: "Allow", HTTP: &api.HTTPMatch{Methods: []string{"GET"}}}), np, []string{"spec.ingress[0].http", "not supported"}},
		{"services", withRule(api.Rule{Action: "Allow", Destination: api.EntityRule{Services: &api.ServiceMatch{Name: "x"}}}), np, []string{"spec.ingress[0].destination.services", "not supported"}},
		{"policy selector", func(s *policy.State) {
			s.Policies = []*api.NetworkPolicy{NP("default", "p", 1, "app in {", nil, nil)}
		}, np, []string{"NetworkPolicy default/p", "spec.selector", `"app in {"`}},
		{"policy types", func(s *policy.State) {
			s.Policies = []*api.NetworkPolicy{NP("default", "p", 1, "", nil, nil, "Sideways")}
		}, np, []string{"spec.types[0]", `"Sideways"`}},
		{"policy order NaN", func(s *policy.State) {
			s.Policies = []*api.NetworkPolicy{NP("default", "p", math.NaN(), "", nil, nil)}
		}, np, []string{"spec.order"}},
		{"tier", func(s *policy.State) {
			p := NP("default", "p", 1, "", nil, nil)
			p.Spec.Tier = "security"
			s.Policies = []*api.NetworkPolicy{p}
		}, np, []string{"spec.tier", `"security"`}},
		{"doNotTrack", withGNP(func(s *api.GlobalNetworkPolicySpec) { s.DoNotTrack = true }), gnp, []string{"GlobalNetworkPolicy g", "spec.doNotTrack", "true"}},
		{"preDNAT", withGNP(func(s *api.GlobalNetworkPolicySpec) { s.PreDNAT = true }), gnp, []string{"spec.preDNAT", "true"}},
		{"global policy namespaceSelector", withGNP(func(s *api.GlobalNetworkPolicySpec) { s.NamespaceSelector = "x =" }), gnp, []string{"spec.namespaceSelector", `"x ="`}},
		{"profile rule", func(s *policy.State) {
			p := CNIProfile("net")
			p.Spec.Egress = []api.Rule{{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("x-")}}}
			s.Profiles = []*api.Profile{p}
			s.Endpoints[1].Spec.Profiles = []string{"net"}
		}, "Profile/net", []string{"Profile net", "spec.egress[0].destination.ports[0]"}},
		{"policy that selects nothing here", func(s *policy.State) {
			s.Policies = []*api.NetworkPolicy{NP("elsewhere", "p", 1, "app == 'nothing'", nil, []api.Rule{{Action: "Allow", IPVersion: Ptr(7)}})}
		}, "NetworkPolicy/elsewhere/p", []string{"NetworkPolicy elsewhere/p", "spec.egress[0].ipVersion"}},
		{"rule of a direction the policy does not have", func(s *policy.State) {
			s.Policies = []*api.NetworkPolicy{NP("default", "p", 1, "", []api.Rule{{Action: "Bogus"}}, nil, "Egress")}
		}, np, []string{"spec.ingress[0].action"}},
		{"unused profile", func(s *policy.State) {
			p := CNIProfile("unused")
			p.Spec.Ingress[0].Source.Selector = "has("
			s.Profiles = []*api.Profile{p}
		}, "Profile/unused", []string{"Profile unused", "spec.ingress[0].source.selector"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ruleState()
			tc.change(s)
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatalf("Compile: %v; want the object quarantined and the rest compiled", err)
			}
			if len(rs.Quarantined) != 1 || rs.Quarantined[0].ID() != tc.id {
				t.Fatalf("quarantined %+v, want exactly %s", rs.Quarantined, tc.id)
			}
			for _, w := range tc.want {
				if !strings.Contains(rs.Quarantined[0].Reason, w) {
					t.Errorf("reason %q does not mention %q", rs.Quarantined[0].Reason, w)
				}
			}
			// Every chain of the object that exists drops everything.
			for _, c := range rs.Chains {
				if strings.Contains(c.Name, "/p") && strings.HasPrefix(c.Name, "p") || c.Name == "gpi-g" || c.Name == "gpo-g" ||
					strings.HasPrefix(c.Name, "pri-") || strings.HasPrefix(c.Name, "pro-") {
					if got := chainRules(t, rs, c.Name); !slices.Equal(got, []string{"drop"}) {
						t.Errorf("chain %s of the quarantined object = %q, want [drop]", c.Name, got)
					}
				}
			}
			if err := Check(rs); err != nil {
				t.Errorf("ill-formed ruleset: %v", err)
			}
		})
	}
}

// TestQuarantineFailsClosed: the endpoints a quarantined policy selects
// are denied in its directions, at its place in the order; other
// endpoints, other directions and the other policies are compiled as if
// it were not there.
func TestQuarantineFailsClosed(t *testing.T) {
	allowAll := []api.Rule{{Action: "Allow"}}
	http := []api.Rule{{Action: "Allow", HTTP: &api.HTTPMatch{Methods: []string{"GET"}}}}
	services := []api.Rule{{Action: "Allow", Destination: api.EntityRule{Services: &api.ServiceMatch{Name: "x", Namespace: "default"}}}}
	dnt := func(g *api.GlobalNetworkPolicy) *api.GlobalNetworkPolicy {
		g.Spec.DoNotTrack, g.Spec.ApplyOnForward = true, true
		return g
	}
	const jump, ret = "jump ", "meta mark & 0x00010000 == 0x00010000 return"
	tests := []struct {
		name     string
		policies []*api.NetworkPolicy
		globals  []*api.GlobalNetworkPolicy
		want     map[string][]string // chain → rules
	}{
		{
			name: "selected endpoint denied, the other untouched, a later policy still programmed",
			globals: []*api.GlobalNetworkPolicy{
				dnt(GNP("bad", 10, "app == 'web'", allowAll, nil)),
				GNP("later", 20, "all()", allowAll, nil),
			},
			want: map[string][]string{
				"gpi-bad":   {"drop"},
				"gpi-later": {allow},
				"tw-tby1":   {jump + "gpi-bad", ret, jump + "gpi-later", ret, "drop"},
				"tw-tby2":   {jump + "gpi-later", ret, "drop"},
			},
		},
		{
			name: "an earlier policy still decides first",
			policies: []*api.NetworkPolicy{
				NP("default", "first", 1, "app == 'web'", allowAll, nil),
				NP("default", "bad", 2, "app == 'web'", http, nil),
			},
			want: map[string][]string{
				"pi-default/bad": {"drop"},
				"tw-tby1":        {jump + "pi-default/first", ret, jump + "pi-default/bad", ret, "drop"},
			},
		},
		{
			name:     "an egress-only quarantined policy leaves ingress alone",
			policies: []*api.NetworkPolicy{NP("default", "bad", 1, "app == 'web'", nil, services, "Egress")},
			want: map[string][]string{
				"po-default/bad": {"drop"},
				"fw-tby1":        {jump + "po-default/bad", ret, "drop"},
				"tw-tby1":        {"drop"}, // no policy, no profile: as before
			},
		},
		{
			name:     "a selector that does not parse selects its whole namespace",
			policies: []*api.NetworkPolicy{NP("default", "bad", 1, "app ==", allowAll, nil), NP("prod", "other", 1, "app ==", allowAll, nil)},
			want: map[string][]string{
				"tw-tby1": {jump + "pi-default/bad", ret, "drop"},
				"tw-tby2": {jump + "pi-default/bad", ret, "drop"},
			},
		},
		{
			name:     "types that do not parse mean both directions",
			policies: []*api.NetworkPolicy{NP("default", "bad", 1, "app == 'db'", allowAll, nil, "Sideways")},
			want: map[string][]string{
				"tw-tby2": {jump + "pi-default/bad", ret, "drop"},
				"fw-tby2": {jump + "po-default/bad", ret, "drop"},
			},
		},
		{
			name: "a Pass before the quarantined policy skips it, as Calico skips the rest of the tier",
			globals: []*api.GlobalNetworkPolicy{
				GNP("pass", 1, "app == 'web'", []api.Rule{{Action: "Pass"}}, nil),
				dnt(GNP("bad", 2, "app == 'web'", allowAll, nil)),
			},
			want: map[string][]string{
				"tw-tby1": {jump + "gpi-pass", ret, "meta mark & 0x00020000 == 0x00000000 " + jump + "gpi-bad", ret, "meta mark & 0x00020000 == 0x00000000 drop", "drop"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ruleState()
			s.Policies, s.GlobalPolicies = tc.policies, tc.globals
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs.Quarantined) == 0 {
				t.Fatal("nothing quarantined")
			}
			for chain, want := range tc.want {
				if diff := cmp.Diff(want, chainRules(t, rs, chain)); diff != "" {
					t.Errorf("chain %s (-want +got):\n%s", chain, diff)
				}
			}
		})
	}
}

// TestBadObjectsAreSkipped: a bad endpoint, set, pool or setting does not
// fail the compile either. What cannot be read is left out with a warning
// naming the object, field and value, in the way that opens nothing.
func TestBadObjectsAreSkipped(t *testing.T) {
	tests := []struct {
		name   string
		change func(*policy.State)
		want   []string // substrings of one warning
		check  func(t *testing.T, rs *policy.Ruleset)
	}{
		{"endpoint address", func(s *policy.State) {
			s.Endpoints[2].Spec.IPNetworks = []string{"10.0.1.999/32"}
		}, []string{"WorkloadEndpoint prod/api", "spec.ipNetworks[0]", "10.0.1.999/32"}, nil},
		{"local endpoint without interface", func(s *policy.State) {
			s.Endpoints[0].Spec.InterfaceName = ""
		}, []string{"WorkloadEndpoint default/web", "spec.interfaceName"}, notDispatched("tby1")},
		{"local endpoint interface too long", func(s *policy.State) {
			s.Endpoints[0].Spec.InterfaceName = "tby0123456789abc"
		}, []string{"spec.interfaceName", "tby0123456789abc"}, notDispatched("tby0123456789abc")},
		{"local endpoint with a subnet", func(s *policy.State) {
			s.Endpoints[1].Spec.IPNetworks = []string{"10.0.0.0/30"}
		}, []string{"WorkloadEndpoint default/db", "spec.ipNetworks", "10.0.0.0/30"}, func(t *testing.T, rs *policy.Ruleset) {
			for _, e := range rs.Set(policy.SetWorkloadSrc4).Elements {
				if e.IfName == "tby2" {
					t.Errorf("tby2 may send from %s", e.Addr)
				}
			}
		}},
		{"two local endpoints, one interface", func(s *policy.State) {
			s.Endpoints[1].Spec.InterfaceName = s.Endpoints[0].Spec.InterfaceName
		}, []string{"default/db", "tby1", "claimed by 2"}, notDispatched("tby1")},
		{"endpoint port protocol", func(s *policy.State) {
			s.Endpoints[2].Spec.Ports[0].Protocol = "HTTP"
		}, []string{"WorkloadEndpoint prod/api", "spec.ports[0].protocol", `"HTTP"`}, nil},
		{"port mapping protocol", func(s *policy.State) {
			s.Endpoints[0].Spec.Ports = []api.WorkloadEndpointPort{{Protocol: "ICMP", Port: 1, HostPort: 2}}
		}, []string{"spec.ports[0].protocol", "ICMP"}, noHostPorts},
		{"port mapping hostIP", func(s *policy.State) {
			s.Endpoints[0].Spec.Ports = []api.WorkloadEndpointPort{{Protocol: "TCP", Port: 1, HostPort: 2, HostIP: "nowhere"}}
		}, []string{"spec.ports[0].hostIP", `"nowhere"`}, noHostPorts},
		{"host endpoint IP", func(s *policy.State) {
			s.HostEndpoints[0].Spec.ExpectedIPs = []string{"x"}
		}, []string{"HostEndpoint b-eth0", "spec.expectedIPs[0]"}, nil},
		{"network set", func(s *policy.State) {
			s.NetworkSets[0].Spec.Nets = []string{"1.2.3.4/40"}
		}, []string{"NetworkSet default/office", "spec.nets[0]"}, nil},
		{"global network set", func(s *policy.State) {
			s.GlobalNetworkSets[0].Spec.Nets = []string{"::ffff:1.2.3.4"}
		}, []string{"GlobalNetworkSet corp", "spec.nets[0]"}, nil},
		{"pool", func(s *policy.State) {
			s.Pools = []*api.IPPool{Pool("p", "10.0.0.0", true)}
		}, []string{"IPPool p", "spec.cidr", `"10.0.0.0"`}, nil},
		{"endpoint to host action", func(s *policy.State) {
			s.Felix.DefaultEndpointToHostAction = "Reject"
		}, []string{"defaultEndpointToHostAction", `"Reject"`, "Drop"}, func(t *testing.T, rs *policy.Ruleset) {
			if got := chainRules(t, rs, "wl-to-host"); got[len(got)-1] != "drop" {
				t.Errorf("wl-to-host ends with %q, want drop", got[len(got)-1])
			}
		}},
		{"natOutgoingAddress", func(s *policy.State) {
			s.Felix.NATOutgoingAddress = "here"
		}, []string{"natOutgoingAddress", `"here"`}, nil},
		{"failsafe protocol", func(s *policy.State) {
			s.HostEndpoints = append(s.HostEndpoints, HEP(Node, "a-eth0", "eth0", nil))
			s.Felix.FailsafeInboundHostPorts = &[]api.ProtoPort{{Protocol: "icmp", Port: 1}}
		}, []string{"failsafeInboundHostPorts[0].protocol", `"icmp"`}, func(t *testing.T, rs *policy.Ruleset) {
			if got := chainRules(t, rs, "failsafe-in"); len(got) != 0 {
				t.Errorf("failsafe-in = %q, want nothing open", got)
			}
		}},
		{"failsafe net", func(s *policy.State) {
			s.Felix.FailsafeOutboundHostPorts = &[]api.ProtoPort{{Protocol: "tcp", Port: 1, Net: "x/1"}}
		}, []string{"failsafeOutboundHostPorts[0].net"}, nil},
		{"interface prefix", func(s *policy.State) {
			s.Felix.InterfacePrefix = " , "
		}, []string{"interfacePrefix", `"tby"`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ruleState()
			tc.change(s)
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatalf("Compile: %v; want a warning and the rest compiled", err)
			}
			found := false
			for _, w := range rs.Warnings {
				ok := true
				for _, sub := range tc.want {
					ok = ok && strings.Contains(w, sub)
				}
				found = found || ok
			}
			if !found {
				t.Errorf("warnings %q: none mentions all of %q", rs.Warnings, tc.want)
			}
			if len(rs.Quarantined) > 0 {
				t.Errorf("quarantined %+v, want nothing", rs.Quarantined)
			}
			if err := Check(rs); err != nil {
				t.Errorf("ill-formed ruleset: %v", err)
			}
			if tc.check != nil {
				tc.check(t, rs)
			}
		})
	}
}

// notDispatched checks an interface has no chains and no dispatch entry:
// the dispatch chains drop its traffic.
func notDispatched(ifName string) func(*testing.T, *policy.Ruleset) {
	return func(t *testing.T, rs *policy.Ruleset) {
		t.Helper()
		for _, m := range []string{policy.MapFromWorkload, policy.MapToWorkload} {
			for _, e := range rs.Map(m).Elements {
				if e.Key.IfName == ifName {
					t.Errorf("map %s still dispatches %s", m, ifName)
				}
			}
		}
	}
}

func noHostPorts(t *testing.T, rs *policy.Ruleset) {
	t.Helper()
	if n := len(rs.Map(policy.MapHostPorts).Elements); n != 0 {
		t.Errorf("host-ports has %d elements, want 0", n)
	}
}

// TestCompileErrors: what is left to fail the compile are programming
// errors of the caller, never an object's content.
func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*policy.State)
		want   string
	}{
		{"no node", func(s *policy.State) { s.Node = "" }, "node"},
		{"nil endpoint", func(s *policy.State) { s.Endpoints = append(s.Endpoints, nil) }, "endpoints[3]"},
		{"nil policy", func(s *policy.State) { s.Policies = []*api.NetworkPolicy{nil} }, "policies[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ruleState()
			tc.change(s)
			if _, err := policy.Compile(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
