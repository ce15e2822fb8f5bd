package api

import "strings"

// Kinds lists every kind, in the order resources of a manifest that mixes
// kinds are best applied (pools and config before the endpoints using them).
var Kinds = []KindInfo{
	{Kind: "Node", Plural: "nodes", Short: []string{"no"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &Node{} }},
	{Kind: "IPPool", Plural: "ippools", Short: []string{"pool", "pools", "ipp"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &IPPool{} }},
	{Kind: "IPAMConfig", Plural: "ipamconfigs", Short: []string{"ipamconfiguration", "ipamconfigurations"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &IPAMConfig{} }},
	{Kind: "ClusterInformation", Plural: "clusterinformations", Short: []string{"clusterinfo", "clusterinfos"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &ClusterInformation{} }},
	{Kind: "IPReservation", Plural: "ipreservations", Short: []string{"ipr", "ipres"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &IPReservation{} }},
	{Kind: "BGPConfiguration", Plural: "bgpconfigurations", Short: []string{"bgpconfig", "bgpconfigs"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &BGPConfiguration{} }},
	{Kind: "BGPPeer", Plural: "bgppeers", Short: []string{"bgpp"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &BGPPeer{} }},
	{Kind: "FelixConfiguration", Plural: "felixconfigurations", Short: []string{"felixconfig", "felixconfigs"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &FelixConfiguration{} }},
	{Kind: "Profile", Plural: "profiles", Short: []string{"pro"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &Profile{} }},
	{Kind: "Namespace", Plural: "namespaces", Short: []string{"ns"}, Scope: ClusterScoped, NewFunc: func() Resource { return &Namespace{} }},
	{Kind: "GlobalNetworkSet", Plural: "globalnetworksets", Short: []string{"gns"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &GlobalNetworkSet{} }},
	{Kind: "NetworkSet", Plural: "networksets", Short: []string{"ns-set", "netset", "netsets"}, Scope: Namespaced, Calico: true, NewFunc: func() Resource { return &NetworkSet{} }},
	{Kind: "Tier", Plural: "tiers", Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &Tier{} }},
	{Kind: "GlobalNetworkPolicy", Plural: "globalnetworkpolicies", Short: []string{"gnp", "globalpolicy", "globalpolicies"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &GlobalNetworkPolicy{} }},
	{Kind: "NetworkPolicy", Plural: "networkpolicies", Short: []string{"np", "policy", "policies"}, Scope: Namespaced, Calico: true, NewFunc: func() Resource { return &NetworkPolicy{} }},
	{Kind: "StagedGlobalNetworkPolicy", Plural: "stagedglobalnetworkpolicies", Short: []string{"sgnp"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &StagedGlobalNetworkPolicy{} }},
	{Kind: "StagedNetworkPolicy", Plural: "stagednetworkpolicies", Short: []string{"snp"}, Scope: Namespaced, Calico: true, NewFunc: func() Resource { return &StagedNetworkPolicy{} }},
	{Kind: "StagedKubernetesNetworkPolicy", Plural: "stagedkubernetesnetworkpolicies", Short: []string{"sknp"}, Scope: Namespaced, Calico: true, NewFunc: func() Resource { return &StagedKubernetesNetworkPolicy{} }},
	{Kind: "HostEndpoint", Plural: "hostendpoints", Short: []string{"hep"}, Scope: ClusterScoped, Calico: true, NewFunc: func() Resource { return &HostEndpoint{} }},
	{Kind: "WorkloadEndpoint", Plural: "workloadendpoints", Short: []string{"wep", "weps"}, Scope: Namespaced, Calico: true, NewFunc: func() Resource { return &WorkloadEndpoint{} }},
}

// LookupKind finds a kind by name, plural or short name, case-insensitively.
func LookupKind(name string) (KindInfo, bool) {
	n := strings.ToLower(name)
	for _, k := range Kinds {
		if strings.ToLower(k.Kind) == n || k.Plural == n {
			return k, true
		}
		for _, s := range k.Short {
			if s == n {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}

// KindOf returns the KindInfo of a resource value.
func KindOf(r Resource) KindInfo { return r.KindInfo() }

func kindInfo(name string) KindInfo {
	k, ok := LookupKind(name)
	if !ok {
		panic("api: unregistered kind " + name)
	}
	return k
}

func (*Node) KindInfo() KindInfo                { return kindInfo("Node") }
func (*ClusterInformation) KindInfo() KindInfo  { return kindInfo("ClusterInformation") }
func (*IPPool) KindInfo() KindInfo              { return kindInfo("IPPool") }
func (*IPAMConfig) KindInfo() KindInfo          { return kindInfo("IPAMConfig") }
func (*IPReservation) KindInfo() KindInfo       { return kindInfo("IPReservation") }
func (*BGPConfiguration) KindInfo() KindInfo    { return kindInfo("BGPConfiguration") }
func (*BGPPeer) KindInfo() KindInfo             { return kindInfo("BGPPeer") }
func (*FelixConfiguration) KindInfo() KindInfo  { return kindInfo("FelixConfiguration") }
func (*Profile) KindInfo() KindInfo             { return kindInfo("Profile") }
func (*GlobalNetworkSet) KindInfo() KindInfo    { return kindInfo("GlobalNetworkSet") }
func (*NetworkSet) KindInfo() KindInfo          { return kindInfo("NetworkSet") }
func (*Tier) KindInfo() KindInfo                { return kindInfo("Tier") }
func (*GlobalNetworkPolicy) KindInfo() KindInfo { return kindInfo("GlobalNetworkPolicy") }
func (*NetworkPolicy) KindInfo() KindInfo       { return kindInfo("NetworkPolicy") }
func (*HostEndpoint) KindInfo() KindInfo        { return kindInfo("HostEndpoint") }
func (*WorkloadEndpoint) KindInfo() KindInfo    { return kindInfo("WorkloadEndpoint") }
