// Package policytest builds policy states for tests: endpoints, profiles,
// policies and pools the way the CNI plugin and users write them, and a
// catalogue of representative states shared by the compiler's golden
// tests and the nftables driver's kernel tests.
//
// It imports internal/api and internal/agent/policy only.
package policytest

import (
	"github.com/tabbynet/tabby/internal/api"
)

// Node is the node the test states compile for.
const Node = "node-a"

// WEP builds a workload endpoint.
func WEP(node, ns, name, ifName string, addrs []string, labels map[string]string, profiles ...string) *api.WorkloadEndpoint {
	return &api.WorkloadEndpoint{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "WorkloadEndpoint"},
		ObjectMeta: api.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: api.WorkloadEndpointSpec{
			Orchestrator: "cni", Node: node, InterfaceName: ifName, IPNetworks: addrs, Profiles: profiles,
		},
	}
}

// CNIProfile is the profile the CNI plugin creates for a network: members
// of the network may reach each other, and go anywhere.
func CNIProfile(network string) *api.Profile {
	return &api.Profile{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "Profile"},
		ObjectMeta: api.ObjectMeta{Name: network},
		Spec: api.ProfileSpec{
			Ingress:       []api.Rule{{Action: "Allow", Source: api.EntityRule{Selector: "has(" + network + ")"}}},
			Egress:        []api.Rule{{Action: "Allow"}},
			LabelsToApply: map[string]string{network: ""},
		},
	}
}

// AllowAllProfile allows everything both ways (DC/OS 2.1's default profile).
func AllowAllProfile(name string) *api.Profile {
	return &api.Profile{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "Profile"},
		ObjectMeta: api.ObjectMeta{Name: name},
		Spec: api.ProfileSpec{
			Ingress:       []api.Rule{{Action: "Allow"}},
			Egress:        []api.Rule{{Action: "Allow"}},
			LabelsToApply: map[string]string{name: ""},
		},
	}
}

// NP builds a NetworkPolicy.
func NP(ns, name string, order float64, sel string, ingress, egress []api.Rule, types ...string) *api.NetworkPolicy {
	return &api.NetworkPolicy{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "NetworkPolicy"},
		ObjectMeta: api.ObjectMeta{Name: name, Namespace: ns},
		Spec:       api.NetworkPolicySpec{Order: &order, Selector: sel, Ingress: ingress, Egress: egress, Types: types},
	}
}

// GNP builds a GlobalNetworkPolicy.
func GNP(name string, order float64, sel string, ingress, egress []api.Rule, types ...string) *api.GlobalNetworkPolicy {
	return &api.GlobalNetworkPolicy{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "GlobalNetworkPolicy"},
		ObjectMeta: api.ObjectMeta{Name: name},
		Spec:       api.GlobalNetworkPolicySpec{Order: &order, Selector: sel, Ingress: ingress, Egress: egress, Types: types},
	}
}

// Tier builds a Tier; order nil: unordered (last).
func Tier(name string, order *float64, defaultAction string) *api.Tier {
	return &api.Tier{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "Tier"},
		ObjectMeta: api.ObjectMeta{Name: name},
		Spec:       api.TierSpec{Order: order, DefaultAction: defaultAction},
	}
}

// InTier puts a GlobalNetworkPolicy in a tier, naming it "<tier>.<name>"
// as Calico requires.
func InTier(tier string, g *api.GlobalNetworkPolicy) *api.GlobalNetworkPolicy {
	g.Spec.Tier, g.Name = tier, tier+"."+g.Name
	return g
}

// Pool builds an IP pool.
func Pool(name, cidr string, natOutgoing bool) *api.IPPool {
	return &api.IPPool{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "IPPool"},
		ObjectMeta: api.ObjectMeta{Name: name},
		Spec:       api.IPPoolSpec{CIDR: cidr, NATOutgoing: natOutgoing},
	}
}

// GNS builds a GlobalNetworkSet.
func GNS(name string, labels map[string]string, nets ...string) *api.GlobalNetworkSet {
	return &api.GlobalNetworkSet{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "GlobalNetworkSet"},
		ObjectMeta: api.ObjectMeta{Name: name, Labels: labels},
		Spec:       api.NetworkSetSpec{Nets: nets},
	}
}

// NS builds a NetworkSet.
func NS(ns, name string, labels map[string]string, nets ...string) *api.NetworkSet {
	return &api.NetworkSet{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "NetworkSet"},
		ObjectMeta: api.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       api.NetworkSetSpec{Nets: nets},
	}
}

// HEP builds a host endpoint.
func HEP(node, name, ifName string, labels map[string]string, expectedIPs ...string) *api.HostEndpoint {
	return &api.HostEndpoint{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "HostEndpoint"},
		ObjectMeta: api.ObjectMeta{Name: name, Labels: labels},
		Spec:       api.HostEndpointSpec{Node: node, InterfaceName: ifName, ExpectedIPs: expectedIPs},
	}
}

// Ptr returns a pointer to v.
func Ptr[T any](v T) *T { return &v }

// Proto returns a protocol pointer.
func Proto(p string) *api.Protocol { return Ptr(api.Protocol(p)) }

// Ports parses ports ("80", "8000:8080", "http"); a value that is none of
// these becomes an invalid port, for validation tests.
func Ports(ps ...string) []api.Port {
	out := make([]api.Port, len(ps))
	for i, s := range ps {
		p, err := api.ParsePort(s)
		if err != nil {
			p = api.Port{Invalid: s}
		}
		out[i] = p
	}
	return out
}
