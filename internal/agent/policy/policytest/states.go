package policytest

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

// Interface names of the local workloads in the states below.
const (
	IfWeb  = "tby0000000web"
	IfDB   = "tby00000000db"
	IfTest = "tby000000test"
	IfDev  = "tby0000000dev"
)

// States returns the representative states, by name. Each call builds
// fresh values, so callers may modify them.
func States() map[string]*policy.State {
	return map[string]*policy.State{
		"empty":          Empty(),
		"cni-network":    CNINetwork(),
		"policy-order":   PolicyOrder(),
		"rule-fields":    RuleFields(),
		"network-sets":   NetworkSets(),
		"namespaces":     Namespaces(),
		"host-endpoints": HostEndpoints(),
		"port-mappings":  PortMappings(),
		"dual-stack":     DualStack(),
		"tiers":          Tiers(),
		"domains":        Domains(),
	}
}

// Domains is egress by DNS name: web may reach TCP 443 of api.example.com
// and *.example.org, and whatever the databases network set names
// (198.51.100.0/28 and db.example.net); the agent's DNS forwarder listens
// on 192.0.2.10:1053.
func Domains() *policy.State {
	db := GNS("databases", map[string]string{"role": "db"}, "198.51.100.0/28")
	db.Spec.AllowedEgressDomains = []string{"db.example.net"}
	return &policy.State{
		Node: Node,
		Endpoints: []*api.WorkloadEndpoint{
			WEP(Node, "default", "node--a-cni-web-eth0", IfWeb, []string{"10.65.0.2/32"}, map[string]string{"app": "web"}, "calico"),
		},
		Profiles: []*api.Profile{CNIProfile("calico")},
		Pools:    []*api.IPPool{Pool("default", "10.65.0.0/16", false)},
		GlobalPolicies: []*api.GlobalNetworkPolicy{GNP("web-egress", 10, "app == 'web'", nil, []api.Rule{
			{Action: "Allow", Protocol: Proto("UDP"), Destination: api.EntityRule{Ports: Ports("53")}},
			{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("443"), Domains: []string{"api.example.com", "*.example.org"}}},
			{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Selector: "role == 'db'"}},
		}, "Egress")},
		GlobalNetworkSets: []*api.GlobalNetworkSet{db},
		DNS: &policy.DNSPolicy{Redirect4: netip.MustParseAddrPort("192.0.2.10:1053"), MaxElements: 1024,
			Resolvers: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("fd00::53")}},
	}
}

// StateNames lists the names of States, sorted.
func StateNames() []string { return slices.Sorted(maps.Keys(States())) }

// Empty is a node with no endpoints at all.
func Empty() *policy.State { return &policy.State{Node: Node} }

// CNINetwork is DC/OS in 2017: one network "calico" whose profile the CNI
// plugin created, two local tasks and one on another agent, a pool with
// natOutgoing.
func CNINetwork() *policy.State {
	return &policy.State{
		Node: Node,
		Endpoints: []*api.WorkloadEndpoint{
			WEP(Node, "default", "node--a-cni-web-eth0", IfWeb, []string{"10.65.0.2/32"}, map[string]string{"app": "web"}, "calico"),
			WEP(Node, "default", "node--a-cni-db-eth0", IfDB, []string{"10.65.0.3/32"}, map[string]string{"app": "db"}, "calico"),
			WEP("node-b", "default", "node--b-cni-web2-eth0", "tby00000web2", []string{"10.65.1.2/32"}, map[string]string{"app": "web"}, "calico"),
		},
		Profiles: []*api.Profile{CNIProfile("calico")},
		Pools:    []*api.IPPool{Pool("default-ipv4", "10.65.0.0/16", true)},
	}
}

// PolicyOrder exercises ordering (order, then name; unset last), types
// defaulting, Pass to profiles, Log, and end-of-policies deny.
func PolicyOrder() *policy.State {
	s := CNINetwork()
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{
		// Order 10: log everything to the database, pass monitoring to
		// the profiles.
		GNP("audit-db", 10, "app == 'db'", []api.Rule{
			{Action: "Log"},
			{Action: "Pass", Source: api.EntityRule{Selector: "role == 'monitor'"}},
		}, nil),
		// Same order as audit-db: name breaks the tie (b after a).
		GNP("block-bad", 10, "all()", []api.Rule{
			{Action: "Deny", Source: api.EntityRule{Nets: []string{"192.0.2.0/24"}}},
		}, nil, "Ingress"),
		// Only egress rules: types default to [Egress].
		GNP("egress-dns", 20, "app == 'web'", nil, []api.Rule{
			{Action: "Allow", Protocol: Proto("UDP"), Destination: api.EntityRule{Ports: Ports("53")}},
			{Action: "Deny"},
		}),
	}
	s.Policies = []*api.NetworkPolicy{
		// Order 5 runs before the global ones.
		NP("default", "db-from-web", 5, "app == 'db'", []api.Rule{
			{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Selector: "app == 'web'"}, Destination: api.EntityRule{Ports: Ports("5432")}},
		}, nil),
		// No order: last. No rules and no types: selects for ingress,
		// allows nothing.
		{
			TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "NetworkPolicy"},
			ObjectMeta: api.ObjectMeta{Name: "zz-isolate", Namespace: "default"},
			Spec:       api.NetworkPolicySpec{Selector: "app == 'db'"},
		},
	}
	return s
}

// RuleFields has one policy per family of rule fields.
func RuleFields() *policy.State {
	s := CNINetwork()
	web := "app == 'web'"
	s.Endpoints[0].Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: 8080}}
	s.Endpoints[2].Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: 80}, {Name: "metrics", Protocol: "UDP", Port: 9100}}
	s.Endpoints[0].Spec.ServiceAccountName = "frontend"
	s.Policies = []*api.NetworkPolicy{
		NP("default", "protocols", 1, web, []api.Rule{
			{Action: "Allow", Protocol: Proto("TCP")},
			{Action: "Allow", Protocol: Proto("132")},
			{Action: "Deny", NotProtocol: Proto("UDPLite")},
		}, nil),
		NP("default", "icmp", 2, web, []api.Rule{
			{Action: "Allow", Protocol: Proto("ICMP"), ICMP: &api.ICMPFields{Type: Ptr(8)}},
			{Action: "Allow", Protocol: Proto("ICMP"), ICMP: &api.ICMPFields{Type: Ptr(3), Code: Ptr(4)}},
			{Action: "Deny", Protocol: Proto("ICMPv6"), NotICMP: &api.ICMPFields{Type: Ptr(128), Code: Ptr(0)}},
			{Action: "Deny", Protocol: Proto("ICMP"), NotICMP: &api.ICMPFields{Type: Ptr(0)}},
		}, nil),
		NP("default", "nets", 3, web, []api.Rule{
			{Action: "Allow", IPVersion: Ptr(4), Source: api.EntityRule{Nets: []string{"198.51.100.0/24"}}},
			{Action: "Allow", Source: api.EntityRule{Nets: []string{"203.0.113.0/24", "2001:db8::/32", "203.0.113.7"}}},
			{Action: "Deny", Source: api.EntityRule{NotNets: []string{"10.0.0.0/8"}}},
			{Action: "Allow", IPVersion: Ptr(6), Destination: api.EntityRule{NotNets: []string{"fd00::/8", "fc00::/8"}}},
		}, nil),
		NP("default", "selectors", 4, web, []api.Rule{
			{Action: "Allow", Source: api.EntityRule{Selector: "app == 'db'"}},
			{Action: "Allow", Source: api.EntityRule{NotSelector: "app == 'db'"}},
			{Action: "Allow", Source: api.EntityRule{NamespaceSelector: "projectcalico.org/name == 'prod'", Selector: "has(app)"}},
			{Action: "Allow", Source: api.EntityRule{NamespaceSelector: "global()"}},
			{Action: "Allow", Source: api.EntityRule{ServiceAccounts: &api.ServiceAccountMatch{Names: []string{"frontend"}}}},
		}, nil),
		NP("default", "ports", 5, web, []api.Rule{
			{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("80", "443", "8000:8080")}},
			{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("http", "9000")}},
			{Action: "Deny", Protocol: Proto("UDP"), Destination: api.EntityRule{NotPorts: Ports("53", "metrics")}},
			{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Ports: Ports("1024:65535")}, Destination: api.EntityRule{NotPorts: Ports("22")}},
		}, nil),
	}
	return s
}

// NetworkSets adds network sets that selectors match alongside endpoints.
func NetworkSets() *policy.State {
	s := CNINetwork()
	s.GlobalNetworkSets = []*api.GlobalNetworkSet{
		GNS("corp", map[string]string{"trusted": "yes"}, "172.16.0.0/12", "10.65.0.0/24", "2001:db8:100::/48"),
	}
	s.NetworkSets = []*api.NetworkSet{
		NS("default", "office", map[string]string{"trusted": "yes"}, "198.51.100.0/25"),
		NS("other", "elsewhere", map[string]string{"trusted": "yes"}, "198.51.100.128/25"),
	}
	s.Policies = []*api.NetworkPolicy{
		NP("default", "trusted-only", 1, "app == 'web'", []api.Rule{
			{Action: "Allow", Source: api.EntityRule{Selector: "trusted == 'yes'"}},
		}, nil),
	}
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{
		GNP("trusted-global", 2, "app == 'db'", []api.Rule{
			{Action: "Allow", Source: api.EntityRule{Selector: "trusted == 'yes'"}},
		}, nil),
	}
	return s
}

// Namespaces: namespaced policies select and match only their namespace.
func Namespaces() *policy.State {
	s := CNINetwork()
	s.Endpoints = append(s.Endpoints,
		WEP(Node, "dev", "node--a-cni-dev-eth0", IfDev, []string{"10.65.0.4/32"}, map[string]string{"app": "web"}, "calico"),
		WEP("node-b", "dev", "node--b-cni-dev2-eth0", "tby00000dev2", []string{"10.65.1.4/32"}, map[string]string{"app": "db"}, "calico"),
	)
	s.Policies = []*api.NetworkPolicy{
		NP("dev", "web", 1, "app == 'web'", []api.Rule{
			{Action: "Allow", Source: api.EntityRule{Selector: "app == 'db'"}},
			{Action: "Allow", Source: api.EntityRule{NotSelector: "app == 'web'"}},
			{Action: "Allow", Source: api.EntityRule{Selector: "app == 'db'", NamespaceSelector: "all()"}},
		}, nil),
	}
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{
		{
			TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "GlobalNetworkPolicy"},
			ObjectMeta: api.ObjectMeta{Name: "dev-egress"},
			Spec: api.GlobalNetworkPolicySpec{Order: Ptr(2.0), Selector: "all()", NamespaceSelector: "projectcalico.org/name == 'dev'",
				Egress: []api.Rule{{Action: "Allow", Destination: api.EntityRule{Selector: "app == 'db'"}}}},
		},
	}
	return s
}

// HostEndpoints protects the host's uplink and, with a wildcard, every
// other interface; workload-to-host traffic returns to that policy.
func HostEndpoints() *policy.State {
	s := CNINetwork()
	s.HostEndpoints = []*api.HostEndpoint{
		HEP(Node, "node-a-eth0", "eth0", map[string]string{"role": "uplink"}, "192.0.2.10"),
		HEP(Node, "node-a-all", "*", map[string]string{"role": "any"}),
		HEP("node-b", "node-b-eth0", "eth0", map[string]string{"role": "uplink"}, "192.0.2.11"),
	}
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{
		GNP("uplink", 1, "role == 'uplink'", []api.Rule{
			{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("443")}},
			{Action: "Allow", Source: api.EntityRule{Selector: "role == 'uplink'"}},
		}, []api.Rule{{Action: "Allow"}}, "Ingress", "Egress"),
	}
	s.Felix.DefaultEndpointToHostAction = "Return"
	s.Felix.FailsafeInboundHostPorts = &[]api.ProtoPort{{Protocol: "tcp", Port: 22}, {Protocol: "tcp", Port: 179, Net: "192.0.2.0/24"}}
	return s
}

// PortMappings: Mesos port_mappings and CNI portMappings stored as
// spec.ports with hostPort, a hostIP, a conflict, natOutgoing to a fixed
// address.
func PortMappings() *policy.State {
	s := CNINetwork()
	s.Endpoints[0].Spec.Ports = []api.WorkloadEndpointPort{
		{Protocol: "TCP", Port: 80, HostPort: 31080},
		{Name: "metrics", Protocol: "UDP", Port: 9100, HostPort: 31091, HostIP: "192.0.2.10"},
	}
	s.Endpoints[1].Spec.Ports = []api.WorkloadEndpointPort{
		{Protocol: "TCP", Port: 5432, HostPort: 31432},
		{Protocol: "TCP", Port: 5433, HostPort: 31080}, // also web's: the lower interface name (db) wins, with a warning
	}
	s.Pools = append(s.Pools, Pool("internal", "10.66.0.0/16", false))
	s.Felix.NATOutgoingAddress = "192.0.2.10"
	s.NodeIPs = nil
	return s
}

// DualStack has IPv4 and IPv6 workloads and pools.
func DualStack() *policy.State {
	s := CNINetwork()
	s.Endpoints[0].Spec.IPNetworks = append(s.Endpoints[0].Spec.IPNetworks, "fd00:65::2/128")
	s.Endpoints[2].Spec.IPNetworks = append(s.Endpoints[2].Spec.IPNetworks, "fd00:65:1::2")
	s.Pools = append(s.Pools, Pool("default-ipv6", "fd00:65::/48", true))
	s.Policies = []*api.NetworkPolicy{
		NP("default", "web", 1, "app == 'web'", []api.Rule{
			{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Selector: "has(calico)"}, Destination: api.EntityRule{Ports: Ports("80")}},
			{Action: "Allow", Protocol: Proto("ICMPv6")},
		}, nil),
	}
	return s
}

// Tiers exercises Calico's tiers: a Pass tier (platform, order 50) before
// a Deny tier (security, order 100) before the default tier, a policy in
// the built-in kube-admin tier (1000, Pass), a Pass rule that hands over
// to the next tier, and a tier that applies only to the endpoints its
// policies select.
func Tiers() *policy.State {
	s := CNINetwork()
	s.Tiers = []*api.Tier{
		Tier("security", Ptr(100.0), api.ActionDeny),
		Tier("platform", Ptr(50.0), api.ActionPass),
	}
	fromWeb := api.EntityRule{Selector: "app == 'web'"}
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{
		// platform: monitoring may reach everything; the rest is the next tier's.
		InTier("platform", GNP("allow-monitoring", 1, "all()", []api.Rule{{Action: "Allow", Source: api.EntityRule{Nets: []string{"10.65.9.0/24"}}}}, nil)),
		// security: only web may reach db; db's other traffic is denied
		// here, web's goes on to the default tier.
		InTier("security", GNP("db-from-web", 1, "app == 'db'", []api.Rule{
			{Action: "Pass", Protocol: Proto("TCP"), Source: fromWeb, Destination: api.EntityRule{Ports: Ports("5432")}},
		}, nil)),
		InTier("kube-admin", GNP("deny-bad", 1, "app == 'web'", []api.Rule{{Action: "Deny", Source: api.EntityRule{Nets: []string{"10.65.66.0/24"}}}}, nil)),
		// default: db takes what security passed.
		GNP("db-ingress", 10, "app == 'db'", []api.Rule{{Action: "Allow", Source: fromWeb}}, nil),
	}
	return s
}
