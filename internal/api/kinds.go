package api

// This file holds the Go types of every kind. Field names and JSON tags
// follow Calico's projectcalico.org/v3 API; fields that Calico does not have
// are Tabby extensions and are marked so.

// ---- Node ----

// Node is a host running the Tabby agent.
type Node struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NodeSpec   `json:"spec"`
	Status     NodeStatus `json:"status,omitempty"`
}

type NodeSpec struct {
	BGP                 *NodeBGPSpec  `json:"bgp,omitempty"`
	IPv4VXLANTunnelAddr string        `json:"ipv4VXLANTunnelAddr,omitempty"`
	IPv6VXLANTunnelAddr string        `json:"ipv6VXLANTunnelAddr,omitempty"`
	VXLANTunnelMACAddr  string        `json:"vxlanTunnelMACAddr,omitempty"`
	Addresses           []NodeAddress `json:"addresses,omitempty"`
	OrchRefs            []OrchRef     `json:"orchRefs,omitempty"`
}

type NodeBGPSpec struct {
	ASNumber                *ASNumber `json:"asNumber,omitempty"`
	IPv4Address             string    `json:"ipv4Address,omitempty"` // CIDR, e.g. 10.0.0.1/24
	IPv6Address             string    `json:"ipv6Address,omitempty"`
	IPv4IPIPTunnelAddr      string    `json:"ipv4IPIPTunnelAddr,omitempty"`
	RouteReflectorClusterID string    `json:"routeReflectorClusterID,omitempty"`
}

type NodeAddress struct {
	Address string `json:"address"`
	Type    string `json:"type,omitempty"` // InternalIP, ExternalIP, CalicoNodeIP
}

type OrchRef struct {
	NodeName     string `json:"nodeName,omitempty"`
	Orchestrator string `json:"orchestrator"`
}

// NodeStatus is written by the node's agent.
type NodeStatus struct {
	AgentVersion  string `json:"agentVersion,omitempty"`  // Tabby extension
	LastHeartbeat string `json:"lastHeartbeat,omitempty"` // RFC 3339; Tabby extension
	MTU           int    `json:"mtu,omitempty"`           // workload MTU; Tabby extension
	// QuarantinedPolicies are the policies and profiles this node's
	// agent could not compile: the endpoints they select fail closed
	// (docs/design/policy.md "Quarantine"). Tabby extension.
	QuarantinedPolicies []QuarantinedPolicy `json:"quarantinedPolicies,omitempty"`
}

// QuarantinedPolicy names a policy or profile a node quarantined, and why.
type QuarantinedPolicy struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Reason    string `json:"reason"`
}

// ClusterInformation describes the cluster; the one that counts is named
// "default". It is created once, by the first tool that needs it, and
// never changes its GUID afterwards.
type ClusterInformation struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ClusterInformationSpec `json:"spec"`
}

type ClusterInformationSpec struct {
	ClusterGUID string `json:"clusterGUID,omitempty"`
	// ClusterType is a comma-separated list, e.g. "tabby,etcdv3,bgp".
	ClusterType    string `json:"clusterType,omitempty"`
	CalicoVersion  string `json:"calicoVersion,omitempty"`
	DatastoreReady *bool  `json:"datastoreReady,omitempty"`
	// TabbyVersion is the version of the tool that created it (Tabby extension).
	TabbyVersion string `json:"tabbyVersion,omitempty"`
}

// ---- IPAM configuration ----

// Encapsulation modes for ipipMode and vxlanMode.
const (
	EncapAlways      = "Always"
	EncapCrossSubnet = "CrossSubnet"
	EncapNever       = "Never"
)

// IPPool is a range addresses are allocated from, in blocks.
type IPPool struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       IPPoolSpec `json:"spec"`
}

type IPPoolSpec struct {
	CIDR             string   `json:"cidr"`
	BlockSize        int      `json:"blockSize,omitempty"` // default 26 (v4) / 122 (v6); immutable
	IPIPMode         string   `json:"ipipMode,omitempty"`  // default Never
	VXLANMode        string   `json:"vxlanMode,omitempty"` // default Never
	NATOutgoing      bool     `json:"natOutgoing,omitempty"`
	Disabled         bool     `json:"disabled,omitempty"`
	DisableBGPExport bool     `json:"disableBGPExport,omitempty"`
	NodeSelector     string   `json:"nodeSelector,omitempty"` // default all()
	AllowedUses      []string `json:"allowedUses,omitempty"`  // Workload, Tunnel; default both
}

// IPAMConfig holds cluster-wide IPAM settings; the one that counts is named "default".
type IPAMConfig struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       IPAMConfigSpec `json:"spec"`
}

type IPAMConfigSpec struct {
	StrictAffinity     bool  `json:"strictAffinity"`
	MaxBlocksPerHost   int   `json:"maxBlocksPerHost,omitempty"` // 0: unlimited
	AutoAllocateBlocks *bool `json:"autoAllocateBlocks,omitempty"`
	// LeakGracePeriod is how long an allocation whose handle belongs to no
	// live endpoint is kept before GC releases it (Tabby extension; Calico
	// has it in KubeControllersConfiguration). Default 15m.
	LeakGracePeriod *Duration `json:"leakGracePeriod,omitempty"`
}

// IPReservation lists addresses IPAM never hands out, neither
// automatically nor when asked for one by name. Addresses already in use
// when a reservation is made stay where they are.
type IPReservation struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       IPReservationSpec `json:"spec"`
}

type IPReservationSpec struct {
	// ReservedCIDRs are CIDRs or single addresses, IPv4 or IPv6.
	ReservedCIDRs []string `json:"reservedCIDRs,omitempty"`
}

// ---- Endpoints ----

// WorkloadEndpoint is one container interface.
type WorkloadEndpoint struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       WorkloadEndpointSpec `json:"spec"`
}

type WorkloadEndpointSpec struct {
	Orchestrator       string                 `json:"orchestrator,omitempty"`
	Workload           string                 `json:"workload,omitempty"`
	Node               string                 `json:"node,omitempty"`
	ContainerID        string                 `json:"containerID,omitempty"`
	Pod                string                 `json:"pod,omitempty"`
	Endpoint           string                 `json:"endpoint,omitempty"`
	ServiceAccountName string                 `json:"serviceAccountName,omitempty"`
	IPNetworks         []string               `json:"ipNetworks,omitempty"`
	IPNATs             []IPNAT                `json:"ipNATs,omitempty"`
	IPv4Gateway        string                 `json:"ipv4Gateway,omitempty"`
	IPv6Gateway        string                 `json:"ipv6Gateway,omitempty"`
	Profiles           []string               `json:"profiles,omitempty"`
	InterfaceName      string                 `json:"interfaceName,omitempty"`
	MAC                string                 `json:"mac,omitempty"`
	Ports              []WorkloadEndpointPort `json:"ports,omitempty"`
	// Network is the CNI network name the endpoint was attached to (Tabby extension).
	Network string `json:"network,omitempty"`
	// IPAMHandle is the IPAM handle holding the endpoint's addresses (Tabby extension).
	IPAMHandle string `json:"ipamHandle,omitempty"`
	// NetNS is the container's network namespace as the runtime named it
	// to CNI ADD (CNI_NETNS, e.g. /var/run/netns/cni-… or /proc/PID/ns/net;
	// Tabby extension). The node's agent uses it to tell a dead container
	// (namespace gone) from a deleted interface of a live one.
	NetNS string `json:"netns,omitempty"`
	// Mesos carries what Mesos told the plugin about the task (Tabby extension).
	Mesos *MesosInfo `json:"mesos,omitempty"`
}

// MesosInfo records the task identity Mesos and Marathon attach to a container.
type MesosInfo struct {
	App       string `json:"app,omitempty"`       // Marathon app path, e.g. /group/app
	TaskID    string `json:"taskID,omitempty"`    // Mesos task ID
	TaskName  string `json:"taskName,omitempty"`  // Mesos task name, e.g. app.group
	Framework string `json:"framework,omitempty"` // e.g. marathon
	AgentID   string `json:"agentID,omitempty"`
}

type IPNAT struct {
	InternalIP string `json:"internalIP"`
	ExternalIP string `json:"externalIP"`
}

type WorkloadEndpointPort struct {
	Name     string   `json:"name,omitempty"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
	HostPort uint16   `json:"hostPort,omitempty"`
	HostIP   string   `json:"hostIP,omitempty"`
}

// HostEndpoint puts a host interface under policy.
type HostEndpoint struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       HostEndpointSpec `json:"spec"`
}

type HostEndpointSpec struct {
	Node          string         `json:"node,omitempty"`
	InterfaceName string         `json:"interfaceName,omitempty"` // or "*"
	ExpectedIPs   []string       `json:"expectedIPs,omitempty"`
	Profiles      []string       `json:"profiles,omitempty"`
	Ports         []EndpointPort `json:"ports,omitempty"`
}

type EndpointPort struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
}

// ---- Policy ----

// Rule actions.
const (
	ActionAllow = "Allow"
	ActionDeny  = "Deny"
	ActionLog   = "Log"
	ActionPass  = "Pass"
)

// Policy types.
const (
	PolicyTypeIngress = "Ingress"
	PolicyTypeEgress  = "Egress"
)

// Profile is the policy of a network: endpoints list the profiles they use.
type Profile struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ProfileSpec `json:"spec"`
}

type ProfileSpec struct {
	Ingress       []Rule            `json:"ingress,omitempty"`
	Egress        []Rule            `json:"egress,omitempty"`
	LabelsToApply map[string]string `json:"labelsToApply,omitempty"`
}

// Tier is an ordered group of policies (Calico v3.29+): tiers apply in
// order, a Pass moves to the next tier, and a tier that selected an
// endpoint but decided nothing applies its defaultAction.
type Tier struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       TierSpec `json:"spec"`
}

type TierSpec struct {
	Order         *float64 `json:"order,omitempty"`         // unset: after every ordered tier
	DefaultAction string   `json:"defaultAction,omitempty"` // Deny (default) or Pass
}

// The built-in tiers, as Calico defines them: they exist whether or not a
// Tier object is stored, and a stored one must keep their order and
// default action.
const (
	DefaultTierName       = "default"
	DefaultTierOrder      = float64(1_000_000)
	KubeAdminTierName     = "kube-admin"
	KubeAdminTierOrder    = float64(1_000)
	KubeBaselineTierName  = "kube-baseline"
	KubeBaselineTierOrder = float64(10_000_000)
)

// BuiltInTiers are the built-in tiers' specs.
func BuiltInTiers() map[string]TierSpec {
	o := func(f float64) *float64 { return &f }
	return map[string]TierSpec{
		DefaultTierName:      {Order: o(DefaultTierOrder), DefaultAction: ActionDeny},
		KubeAdminTierName:    {Order: o(KubeAdminTierOrder), DefaultAction: ActionPass},
		KubeBaselineTierName: {Order: o(KubeBaselineTierOrder), DefaultAction: ActionPass},
	}
}

// NetworkPolicy is a namespaced, ordered, label-selected policy.
type NetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NetworkPolicySpec `json:"spec"`
}

type NetworkPolicySpec struct {
	Tier                   string   `json:"tier,omitempty"`
	Order                  *float64 `json:"order,omitempty"`
	Selector               string   `json:"selector,omitempty"`
	Types                  []string `json:"types,omitempty"`
	Ingress                []Rule   `json:"ingress,omitempty"`
	Egress                 []Rule   `json:"egress,omitempty"`
	ServiceAccountSelector string   `json:"serviceAccountSelector,omitempty"`
}

// GlobalNetworkPolicy is a cluster-wide policy.
type GlobalNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       GlobalNetworkPolicySpec `json:"spec"`
}

type GlobalNetworkPolicySpec struct {
	Tier                   string   `json:"tier,omitempty"`
	Order                  *float64 `json:"order,omitempty"`
	Selector               string   `json:"selector,omitempty"`
	Types                  []string `json:"types,omitempty"`
	Ingress                []Rule   `json:"ingress,omitempty"`
	Egress                 []Rule   `json:"egress,omitempty"`
	ServiceAccountSelector string   `json:"serviceAccountSelector,omitempty"`
	NamespaceSelector      string   `json:"namespaceSelector,omitempty"`
	DoNotTrack             bool     `json:"doNotTrack,omitempty"`
	PreDNAT                bool     `json:"preDNAT,omitempty"`
	ApplyOnForward         bool     `json:"applyOnForward,omitempty"`
}

// Rule is one policy rule; all set fields must match.
type Rule struct {
	Action      string        `json:"action"`
	IPVersion   *int          `json:"ipVersion,omitempty"`
	Protocol    *Protocol     `json:"protocol,omitempty"`
	NotProtocol *Protocol     `json:"notProtocol,omitempty"`
	ICMP        *ICMPFields   `json:"icmp,omitempty"`
	NotICMP     *ICMPFields   `json:"notICMP,omitempty"`
	Source      EntityRule    `json:"source,omitempty"`
	Destination EntityRule    `json:"destination,omitempty"`
	HTTP        *HTTPMatch    `json:"http,omitempty"`
	Metadata    *RuleMetadata `json:"metadata,omitempty"`
}

type ICMPFields struct {
	Type *int `json:"type,omitempty"`
	Code *int `json:"code,omitempty"`
}

type HTTPMatch struct {
	Methods []string `json:"methods,omitempty"`
	Paths   []any    `json:"paths,omitempty"`
}

type RuleMetadata struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// EntityRule matches the source or destination of a packet.
type EntityRule struct {
	Nets              []string             `json:"nets,omitempty"`
	NotNets           []string             `json:"notNets,omitempty"`
	Selector          string               `json:"selector,omitempty"`
	NotSelector       string               `json:"notSelector,omitempty"`
	NamespaceSelector string               `json:"namespaceSelector,omitempty"`
	Ports             []Port               `json:"ports,omitempty"`
	NotPorts          []Port               `json:"notPorts,omitempty"`
	ServiceAccounts   *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
	Services          *ServiceMatch        `json:"services,omitempty"`
	// Domains (egress Allow rules' destination only) are DNS names and
	// patterns whose addresses, learned from the answers the workload
	// gets, the rule matches (see domains.go, docs/design/policy.md).
	Domains []string `json:"domains,omitempty"`
}

type ServiceAccountMatch struct {
	Names    []string `json:"names,omitempty"`
	Selector string   `json:"selector,omitempty"`
}

type ServiceMatch struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// NetworkSet is a namespaced, labelled list of CIDRs that selectors can match.
type NetworkSet struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NetworkSetSpec `json:"spec"`
}

type NetworkSetSpec struct {
	Nets []string `json:"nets,omitempty"`
	// AllowedEgressDomains are domain patterns an egress Allow rule whose
	// destination selector matches the set may reach (Calico Enterprise).
	AllowedEgressDomains []string `json:"allowedEgressDomains,omitempty"`
}

// GlobalNetworkSet is the cluster-wide NetworkSet.
type GlobalNetworkSet struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NetworkSetSpec `json:"spec"`
}

// FelixConfiguration holds dataplane settings; "default" applies to every
// node and "node.<name>" overrides it for one node.
type FelixConfiguration struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       FelixConfigurationSpec `json:"spec"`
}

type FelixConfigurationSpec struct {
	// DefaultEndpointToHostAction: Drop (default), Return or Accept.
	DefaultEndpointToHostAction string       `json:"defaultEndpointToHostAction,omitempty"`
	FailsafeInboundHostPorts    *[]ProtoPort `json:"failsafeInboundHostPorts,omitempty"`
	FailsafeOutboundHostPorts   *[]ProtoPort `json:"failsafeOutboundHostPorts,omitempty"`
	InterfacePrefix             string       `json:"interfacePrefix,omitempty"`
	LogSeverityScreen           string       `json:"logSeverityScreen,omitempty"`
	IPIPMTU                     int          `json:"ipipMTU,omitempty"`
	VXLANMTU                    int          `json:"vxlanMTU,omitempty"`
	VXLANPort                   int          `json:"vxlanPort,omitempty"`
	VXLANVNI                    int          `json:"vxlanVNI,omitempty"`
	NATOutgoingAddress          string       `json:"natOutgoingAddress,omitempty"`
}

type ProtoPort struct {
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
	Net      string `json:"net,omitempty"`
}

// ---- BGP ----

// BGPConfiguration holds cluster ("default") or per-node ("node.<name>") BGP settings.
type BGPConfiguration struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       BGPConfigurationSpec `json:"spec"`
}

type BGPConfigurationSpec struct {
	LogSeverityScreen      string         `json:"logSeverityScreen,omitempty"`
	NodeToNodeMeshEnabled  *bool          `json:"nodeToNodeMeshEnabled,omitempty"`
	ASNumber               *ASNumber      `json:"asNumber,omitempty"`
	ListenPort             uint16         `json:"listenPort,omitempty"`
	BindMode               string         `json:"bindMode,omitempty"`
	ServiceClusterIPs      []ServiceCIDR  `json:"serviceClusterIPs,omitempty"`
	ServiceExternalIPs     []ServiceCIDR  `json:"serviceExternalIPs,omitempty"`
	ServiceLoadBalancerIPs []ServiceCIDR  `json:"serviceLoadBalancerIPs,omitempty"`
	Communities            []Community    `json:"communities,omitempty"`
	PrefixAdvertisements   []PrefixAdvert `json:"prefixAdvertisements,omitempty"`
	NodeMeshPassword       *BGPPassword   `json:"nodeMeshPassword,omitempty"`
	NodeMeshMaxRestartTime *Duration      `json:"nodeMeshMaxRestartTime,omitempty"`
	IgnoredInterfaces      []string       `json:"ignoredInterfaces,omitempty"`
	// NodeMeshBFD is the BFD of the node-to-node mesh sessions (Tabby
	// extension; nil: off).
	NodeMeshBFD *BFD `json:"nodeMeshBFD,omitempty"`
}

// BFD is a session's Bidirectional Forwarding Detection (RFC 5880,
// single hop): when the peer misses Multiplier packets of MinRxMs, the
// BGP session is dropped and its routes withdrawn at once, without
// waiting for the hold time or keeping them for graceful restart.
// Both ends must run it. Tabby extension; unset timers take the defaults.
type BFD struct {
	Enabled bool `json:"enabled"`
	// MinRxMs is the slowest rate at which this host wants the peer's
	// packets, MinTxMs how often it sends its own (milliseconds).
	MinRxMs *int64 `json:"minRxMs,omitempty"`
	MinTxMs *int64 `json:"minTxMs,omitempty"`
	// Multiplier is how many intervals of MinRxMs without a packet mark
	// the peer down.
	Multiplier *int64 `json:"multiplier,omitempty"`
}

// Defaults and limits of BFD timers.
const (
	DefaultBFDIntervalMs = 300
	DefaultBFDMultiplier = 3
	MinBFDIntervalMs     = 10
	MaxBFDIntervalMs     = 60000
)

// Timers returns the receive and transmit intervals and the multiplier,
// with defaults for unset ones.
func (b *BFD) Timers() (minRxMs, minTxMs, multiplier int64) {
	minRxMs, minTxMs, multiplier = DefaultBFDIntervalMs, DefaultBFDIntervalMs, DefaultBFDMultiplier
	if b.MinRxMs != nil {
		minRxMs = *b.MinRxMs
	}
	if b.MinTxMs != nil {
		minTxMs = *b.MinTxMs
	}
	if b.Multiplier != nil {
		multiplier = *b.Multiplier
	}
	return
}

type ServiceCIDR struct {
	CIDR string `json:"cidr"`
}

type Community struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type PrefixAdvert struct {
	CIDR        string   `json:"cidr"`
	Communities []string `json:"communities,omitempty"`
}

// BGPPassword names where a BGP session password comes from. Secrets are
// never printed: output redacts them.
type BGPPassword struct {
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty"`
	// Value is the password itself (Tabby extension; redacted on output).
	Value string `json:"value,omitempty"`
	// File is a path on each node holding the password (Tabby extension).
	File string `json:"file,omitempty"`
}

type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// BGPPeer is a BGP session (or a set of sessions by selector).
type BGPPeer struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       BGPPeerSpec `json:"spec"`
}

type BGPPeerSpec struct {
	Node                     string       `json:"node,omitempty"`
	PeerIP                   string       `json:"peerIP,omitempty"` // ip or ip:port ([v6]:port)
	ASNumber                 ASNumber     `json:"asNumber,omitempty"`
	NodeSelector             string       `json:"nodeSelector,omitempty"`
	PeerSelector             string       `json:"peerSelector,omitempty"`
	Password                 *BGPPassword `json:"password,omitempty"`
	SourceAddress            string       `json:"sourceAddress,omitempty"` // UseNodeIP (default) | None
	MaxRestartTime           *Duration    `json:"maxRestartTime,omitempty"`
	KeepOriginalNextHop      bool         `json:"keepOriginalNextHop,omitempty"`
	NumAllowedLocalASNumbers *int32       `json:"numAllowedLocalASNumbers,omitempty"`
	TTLSecurity              *uint8       `json:"ttlSecurity,omitempty"`
	ReachableBy              string       `json:"reachableBy,omitempty"`
	Filters                  []string     `json:"filters,omitempty"`
	KeepaliveTime            *Duration    `json:"keepaliveTime,omitempty"`
	// BFD is the session's BFD (Tabby extension; nil: off).
	BFD *BFD `json:"bfd,omitempty"`
}
