package policy_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// ruleState is the cluster the rule table tests compile in: two local
// workloads (web, db) in "default", one remote workload in "prod", a
// global and a namespaced network set, and a host endpoint.
func ruleState() *policy.State {
	web := WEP(Node, "default", "web", "tby1", []string{"10.0.0.1/32", "fd00::1/128"}, map[string]string{"app": "web"})
	web.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: 8080}}
	web.Spec.ServiceAccountName = "frontend"
	db := WEP(Node, "default", "db", "tby2", []string{"10.0.0.2/32"}, map[string]string{"app": "db"})
	api1 := WEP("node-b", "prod", "api", "tby3", []string{"10.0.1.1/32"}, map[string]string{"app": "api"})
	api1.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: 80}, {Name: "dns", Protocol: "UDP", Port: 53}}
	return &policy.State{
		Node:              Node,
		Endpoints:         []*api.WorkloadEndpoint{web, db, api1},
		GlobalNetworkSets: []*api.GlobalNetworkSet{GNS("corp", map[string]string{"trusted": ""}, "172.16.0.0/12")},
		NetworkSets:       []*api.NetworkSet{NS("default", "office", map[string]string{"trusted": ""}, "198.51.100.0/24")},
		HostEndpoints:     []*api.HostEndpoint{HEP("node-b", "b-eth0", "eth0", map[string]string{"trusted": ""}, "192.0.2.11")},
	}
}

// chainRules renders the rules of one chain, with every named set
// replaced by its elements so the expectation shows what matches.
func chainRules(t *testing.T, rs *policy.Ruleset, chain string) []string {
	t.Helper()
	c := rs.Chain(chain)
	if c == nil {
		t.Fatalf("no chain %s in:\n%s", chain, rs.Render())
	}
	var out []string
	for _, r := range c.Rules {
		s := r.String()
		for _, set := range rs.Sets {
			if !strings.Contains(s, "@"+set.Name) {
				continue
			}
			var elems []string
			for _, line := range strings.Split(set.Render(), "\n") {
				line = strings.TrimSpace(line)
				if strings.HasSuffix(line, ",") {
					elems = append(elems, strings.TrimSuffix(line, ","))
				}
			}
			s = strings.ReplaceAll(s, "@"+set.Name+" ", "{"+strings.Join(elems, ", ")+"} ")
		}
		out = append(out, s)
	}
	return out
}

const allow = "meta mark set meta mark | 0x00010000 return"

func TestRuleFields(t *testing.T) {
	tests := []struct {
		name   string
		global bool // in a GlobalNetworkPolicy instead of NetworkPolicy default/p
		rule   api.Rule
		want   []string
	}{
		{"allow", false, api.Rule{Action: "Allow"}, []string{allow}},
		{"deny", false, api.Rule{Action: "Deny"}, []string{"drop"}},
		{"log", false, api.Rule{Action: "Log"}, []string{`log prefix "tabby pi-default/p: "`}},
		{"pass", false, api.Rule{Action: "Pass"}, []string{"meta mark set meta mark | 0x00020000 return"}},
		{"action case-insensitive", false, api.Rule{Action: "allow"}, []string{allow}},

		{"protocol name", false, api.Rule{Action: "Allow", Protocol: Proto("TCP")}, []string{"meta l4proto tcp " + allow}},
		{"protocol lower case", false, api.Rule{Action: "Allow", Protocol: Proto("udp")}, []string{"meta l4proto udp " + allow}},
		{"protocol number", false, api.Rule{Action: "Allow", Protocol: Proto("132")}, []string{"meta l4proto sctp " + allow}},
		{"protocol unnamed number", false, api.Rule{Action: "Allow", Protocol: Proto("47")}, []string{"meta l4proto 47 " + allow}},
		{"protocol ICMP is IPv4", false, api.Rule{Action: "Allow", Protocol: Proto("ICMP")}, []string{"meta nfproto ipv4 meta l4proto icmp " + allow}},
		{"protocol ICMPv6 is IPv6", false, api.Rule{Action: "Allow", Protocol: Proto("ICMPv6")}, []string{"meta nfproto ipv6 meta l4proto ipv6-icmp " + allow}},
		{"notProtocol", false, api.Rule{Action: "Deny", NotProtocol: Proto("UDPLite")}, []string{"meta l4proto != udplite drop"}},
		{"protocol and notProtocol", false, api.Rule{Action: "Deny", Protocol: Proto("6"), NotProtocol: Proto("17")}, []string{"meta l4proto tcp meta l4proto != udp drop"}},

		{"icmp type", false, api.Rule{Action: "Allow", Protocol: Proto("ICMP"), ICMP: &api.ICMPFields{Type: Ptr(8)}},
			[]string{"meta nfproto ipv4 meta l4proto icmp icmp type 8 " + allow}},
		{"icmp type and code", false, api.Rule{Action: "Allow", Protocol: Proto("ICMP"), ICMP: &api.ICMPFields{Type: Ptr(3), Code: Ptr(4)}},
			[]string{"meta nfproto ipv4 meta l4proto icmp icmp type 3 icmp code 4 " + allow}},
		{"notICMP type", false, api.Rule{Action: "Deny", Protocol: Proto("ICMP"), NotICMP: &api.ICMPFields{Type: Ptr(0)}},
			[]string{"meta nfproto ipv4 meta l4proto icmp icmp type != 0 drop"}},
		{"notICMP type and code", false, api.Rule{Action: "Deny", Protocol: Proto("ICMPv6"), NotICMP: &api.ICMPFields{Type: Ptr(128), Code: Ptr(0)}},
			[]string{"meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type . icmpv6 code != 128 . 0 drop"}},
		{"icmp and notICMP", false, api.Rule{Action: "Allow", Protocol: Proto("ICMP"), ICMP: &api.ICMPFields{Type: Ptr(3)}, NotICMP: &api.ICMPFields{Type: Ptr(3), Code: Ptr(4)}},
			[]string{"meta nfproto ipv4 meta l4proto icmp icmp type 3 icmp type . icmp code != 3 . 4 " + allow}},

		{"ipVersion 4", false, api.Rule{Action: "Allow", IPVersion: Ptr(4)}, []string{"meta nfproto ipv4 " + allow}},
		{"ipVersion 6", false, api.Rule{Action: "Allow", IPVersion: Ptr(6)}, []string{"meta nfproto ipv6 " + allow}},

		{"source net", false, api.Rule{Action: "Allow", Source: api.EntityRule{Nets: []string{"192.0.2.0/24"}}},
			[]string{"meta nfproto ipv4 ip saddr 192.0.2.0/24 " + allow}},
		{"source address without length", false, api.Rule{Action: "Allow", Source: api.EntityRule{Nets: []string{"192.0.2.7"}}},
			[]string{"meta nfproto ipv4 ip saddr 192.0.2.7 " + allow}},
		{"source nets of both families", false, api.Rule{Action: "Allow", Source: api.EntityRule{Nets: []string{"192.0.2.0/24", "2001:db8::/32", "198.51.100.0/24", "192.0.2.9"}}},
			[]string{
				"meta nfproto ipv4 ip saddr {192.0.2.0/24, 198.51.100.0/24} " + allow,
				"meta nfproto ipv6 ip6 saddr 2001:db8::/32 " + allow,
			}},
		{"source notNets", false, api.Rule{Action: "Deny", Source: api.EntityRule{NotNets: []string{"10.0.0.0/8", "192.168.0.0/16"}}},
			[]string{"meta nfproto ipv4 ip saddr != {10.0.0.0/8, 192.168.0.0/16} drop"}},
		{"destination net and notNet", false, api.Rule{Action: "Allow", Destination: api.EntityRule{Nets: []string{"10.0.0.0/8"}, NotNets: []string{"10.0.0.0/24"}}},
			[]string{"meta nfproto ipv4 ip daddr 10.0.0.0/8 ip daddr != 10.0.0.0/24 " + allow}},
		{"ipVersion drops nets of the other family", false, api.Rule{Action: "Allow", IPVersion: Ptr(6), Source: api.EntityRule{Nets: []string{"10.0.0.0/8", "fd00::/8"}}},
			[]string{"meta nfproto ipv6 ip6 saddr fd00::/8 " + allow}},

		{"selector matches its namespace only", false, api.Rule{Action: "Allow", Source: api.EntityRule{Selector: "has(app)"}},
			[]string{
				"meta nfproto ipv4 ip saddr {10.0.0.1, 10.0.0.2} " + allow,
				"meta nfproto ipv6 ip6 saddr {fd00::1} " + allow,
			}},
		{"selector matches network sets of its namespace", false, api.Rule{Action: "Allow", Source: api.EntityRule{Selector: "has(trusted)"}},
			[]string{
				"meta nfproto ipv4 ip saddr {198.51.100.0/24} " + allow,
				"meta nfproto ipv6 ip6 saddr {} " + allow,
			}},
		{"global policy selector matches everything", true, api.Rule{Action: "Allow", Source: api.EntityRule{Selector: "has(trusted) || app == 'api'"}},
			[]string{
				"meta nfproto ipv4 ip saddr {10.0.1.1, 172.16.0.0/12, 192.0.2.11, 198.51.100.0/24} " + allow,
				"meta nfproto ipv6 ip6 saddr {} " + allow,
			}},
		{"notSelector in a namespaced policy", false, api.Rule{Action: "Allow", Source: api.EntityRule{NotSelector: "app == 'db'"}},
			[]string{
				"meta nfproto ipv4 ip saddr {10.0.0.1, 10.0.0.2, 198.51.100.0/24} ip saddr != {10.0.0.2} " + allow,
				"meta nfproto ipv6 ip6 saddr {fd00::1} ip6 saddr != {} " + allow,
			}},
		{"notSelector in a global policy", true, api.Rule{Action: "Allow", Source: api.EntityRule{NotSelector: "app == 'db'"}},
			[]string{
				"meta nfproto ipv4 ip saddr != {10.0.0.2} " + allow,
				"meta nfproto ipv6 ip6 saddr != {} " + allow,
			}},
		{"namespaceSelector", false, api.Rule{Action: "Allow", Source: api.EntityRule{NamespaceSelector: "projectcalico.org/name == 'prod'"}},
			[]string{
				"meta nfproto ipv4 ip saddr {10.0.1.1} " + allow,
				"meta nfproto ipv6 ip6 saddr {} " + allow,
			}},
		{"namespaceSelector and selector", false, api.Rule{Action: "Allow", Source: api.EntityRule{NamespaceSelector: "all()", Selector: "app in {'api', 'db'}"}},
			[]string{
				"meta nfproto ipv4 ip saddr {10.0.0.2, 10.0.1.1} " + allow,
				"meta nfproto ipv6 ip6 saddr {} " + allow,
			}},
		{"namespaceSelector global()", false, api.Rule{Action: "Allow", Source: api.EntityRule{NamespaceSelector: "global()"}},
			[]string{
				"meta nfproto ipv4 ip saddr {172.16.0.0/12, 192.0.2.11} " + allow,
				"meta nfproto ipv6 ip6 saddr {} " + allow,
			}},
		{"serviceAccounts names", false, api.Rule{Action: "Allow", Source: api.EntityRule{ServiceAccounts: &api.ServiceAccountMatch{Names: []string{"frontend", "other"}}}},
			[]string{
				"meta nfproto ipv4 ip saddr {10.0.0.1} " + allow,
				"meta nfproto ipv6 ip6 saddr {fd00::1} " + allow,
			}},
		{"serviceAccounts selector", true, api.Rule{Action: "Allow", Source: api.EntityRule{ServiceAccounts: &api.ServiceAccountMatch{Selector: "projectcalico.org/name == 'backend'"}}},
			[]string{
				"meta nfproto ipv4 ip saddr {} " + allow,
				"meta nfproto ipv6 ip6 saddr {} " + allow,
			}},
		{"destination selector", false, api.Rule{Action: "Allow", Destination: api.EntityRule{Selector: "app == 'web'"}, IPVersion: Ptr(4)},
			[]string{"meta nfproto ipv4 ip daddr {10.0.0.1} " + allow}},

		{"port", false, api.Rule{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("80")}},
			[]string{"meta l4proto tcp th dport 80 " + allow}},
		{"port range", false, api.Rule{Action: "Allow", Protocol: Proto("UDP"), Destination: api.EntityRule{Ports: Ports("8000:8080")}},
			[]string{"meta l4proto udp th dport 8000-8080 " + allow}},
		{"ports merge into one set", false, api.Rule{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("443", "80", "81", "8000:8080", "8080:9000")}},
			[]string{"meta l4proto tcp th dport {80-81, 443, 8000-9000} " + allow}},
		{"adjacent ports merge into a range", false, api.Rule{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("80", "81")}},
			[]string{"meta l4proto tcp th dport 80-81 " + allow}},
		{"named port", false, api.Rule{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("http")}},
			[]string{
				"meta nfproto ipv4 meta l4proto tcp ip daddr . meta l4proto . th dport {10.0.0.1 . tcp . 8080, 10.0.1.1 . tcp . 80} " + allow,
				"meta nfproto ipv6 meta l4proto tcp ip6 daddr . meta l4proto . th dport {fd00::1 . tcp . 8080} " + allow,
			}},
		{"named port of selected endpoints", false, api.Rule{Action: "Allow", Protocol: Proto("TCP"), IPVersion: Ptr(4), Destination: api.EntityRule{Selector: "app == 'web'", Ports: Ports("http", "9090")}},
			[]string{
				"meta nfproto ipv4 meta l4proto tcp th dport 9090 ip daddr {10.0.0.1} " + allow,
				"meta nfproto ipv4 meta l4proto tcp ip daddr {10.0.0.1} ip daddr . meta l4proto . th dport {10.0.0.1 . tcp . 8080} " + allow,
			}},
		{"notPorts", false, api.Rule{Action: "Deny", Protocol: Proto("TCP"), Destination: api.EntityRule{NotPorts: Ports("22")}},
			[]string{"meta l4proto tcp th dport != 22 drop"}},
		{"notPorts set and named", false, api.Rule{Action: "Deny", Protocol: Proto("UDP"), IPVersion: Ptr(4), Destination: api.EntityRule{NotPorts: Ports("53", "123", "dns")}},
			[]string{"meta nfproto ipv4 meta l4proto udp th dport != {53, 123} ip daddr . meta l4proto . th dport != {10.0.1.1 . udp . 53} drop"}},
		{"source ports", false, api.Rule{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Ports: Ports("1024:65535"), NotPorts: Ports("6000")}},
			[]string{"meta l4proto tcp th sport 1024-65535 th sport != 6000 " + allow}},
		{"source and destination ports multiply", false, api.Rule{Action: "Allow", Protocol: Proto("TCP"), IPVersion: Ptr(4), Source: api.EntityRule{Ports: Ports("1", "http")}, Destination: api.EntityRule{Ports: Ports("2")}},
			[]string{
				"meta nfproto ipv4 meta l4proto tcp th sport 1 th dport 2 " + allow,
				"meta nfproto ipv4 meta l4proto tcp th dport 2 ip saddr . meta l4proto . th sport {10.0.0.1 . tcp . 8080, 10.0.1.1 . tcp . 80} " + allow,
			}},
		{"everything at once", false, api.Rule{
			Action: "Deny", Protocol: Proto("TCP"), IPVersion: Ptr(4),
			Source:      api.EntityRule{Nets: []string{"10.0.0.0/8"}, NotNets: []string{"10.0.0.0/16"}, Selector: "app == 'db'", NotSelector: "has(legacy)"},
			Destination: api.EntityRule{Ports: Ports("80"), NotPorts: Ports("81")},
		}, []string{"meta nfproto ipv4 meta l4proto tcp th dport 80 th dport != 81 ip saddr 10.0.0.0/8 ip saddr != 10.0.0.0/16 ip saddr {10.0.0.2} ip saddr != {} drop"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ruleState()
			chain := "pi-default/p"
			if tc.global {
				s.GlobalPolicies = []*api.GlobalNetworkPolicy{GNP("p", 1, "app == 'web'", []api.Rule{tc.rule}, nil)}
				chain = "gpi-p"
			} else {
				s.Policies = []*api.NetworkPolicy{NP("default", "p", 1, "app == 'web'", []api.Rule{tc.rule}, nil)}
			}
			rs, err := policy.Compile(s)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got := chainRules(t, rs, chain)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rules of %s (-want +got):\n%s", chain, diff)
			}
		})
	}
}
