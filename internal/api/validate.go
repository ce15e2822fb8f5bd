package api

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks a resource the way Calico's validator does (plus a few
// Tabby rules) and returns nil or FieldErrors listing every problem found,
// each naming the field path and the bad value, e.g.
//
//	spec.ingress[0].destination.ports[1]: "80-x" is not a port or range
//
// Call SetDefaults first: Validate treats unset defaulted fields as their
// defaults where it can, but checks what is there.
func Validate(r Resource) error {
	if r == nil {
		return FieldErrors{{Detail: "no resource"}}
	}
	var p problems
	p.checkMeta(r)
	switch r := r.(type) {
	case *Node:
		p.checkNode(&r.Spec, &r.Status)
	case *IPPool:
		p.checkIPPool(&r.Spec)
	case *IPAMConfig:
		p.checkIPAMConfig(&r.Spec)
	case *IPReservation:
		p.checkIPReservation(&r.Spec)
	case *ClusterInformation:
		if g := r.Spec.ClusterGUID; g != "" && !containerIDRegex.MatchString(g) {
			p.add("spec.clusterGUID", "%s is not a GUID: use letters, digits and '-'", quote(g))
		}
	case *BGPConfiguration:
		p.checkBGPConfiguration(r.Name, &r.Spec)
	case *BGPPeer:
		p.checkBGPPeer(&r.Spec)
	case *FelixConfiguration:
		p.checkFelixConfiguration(&r.Spec)
	case *Namespace:
		p.checkNamespace(r)
	case *Profile:
		p.checkProfile(&r.Spec)
	case *GlobalNetworkSet:
		p.checkNetworkSet(&r.ObjectMeta, &r.Spec)
	case *NetworkSet:
		p.checkNetworkSet(&r.ObjectMeta, &r.Spec)
	case *Tier:
		p.checkTier(r.Name, &r.Spec)
	case *GlobalNetworkPolicy:
		p.checkGlobalNetworkPolicy(&r.Spec)
		p.checkTieredName(r.Name, r.Spec.Tier)
	case *NetworkPolicy:
		p.checkNetworkPolicy(&r.Spec)
		p.checkTieredName(r.Name, r.Spec.Tier)
	case *StagedNetworkPolicy, *StagedGlobalNetworkPolicy, *StagedKubernetesNetworkPolicy:
		p.checkStaged(r)
	case *HostEndpoint:
		p.checkHostEndpoint(&r.Spec)
	case *WorkloadEndpoint:
		p.checkWorkloadEndpoint(&r.Spec)
	default:
		p.add("", "unsupported resource type %T", r)
	}
	return p.err()
}

// checkMeta checks metadata: name (kind-specific rules), namespace, labels
// and annotations.
func (p *problems) checkMeta(r Resource) {
	k := r.KindInfo()
	m := r.GetObjectMeta()
	switch r.(type) {
	case *IPAMConfig, *ClusterInformation:
		p.checkConfigName("metadata.name", m.Name, false)
	case *BGPConfiguration, *FelixConfiguration:
		p.checkConfigName("metadata.name", m.Name, true)
	case *NetworkPolicy, *StagedNetworkPolicy:
		p.checkPolicyName(m.Name, networkPolicyNameRegex)
	case *GlobalNetworkPolicy, *StagedGlobalNetworkPolicy:
		p.checkPolicyName(m.Name, globalNetworkPolicyNameRegex)
	default:
		p.checkName("metadata.name", m.Name)
	}
	if k.Scope == Namespaced {
		if m.Namespace != "" && (len(m.Namespace) > maxLabelLen || !labelNameRegex.MatchString(m.Namespace)) {
			p.add("metadata.namespace", "%s is not a valid namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", quote(m.Namespace))
		}
	} else if m.Namespace != "" {
		p.add("metadata.namespace", "%s is not allowed: %s is not namespaced", quote(m.Namespace), k.Kind)
	}
	p.checkLabels("metadata.labels", m.Labels)
	p.checkAnnotations("metadata.annotations", m.Annotations)
}

func (p *problems) checkPolicyName(name string, re *regexp.Regexp) {
	switch {
	case name == "":
		p.add("metadata.name", "is required")
	case len(name) > maxNameLen:
		p.add("metadata.name", "%s is %d characters long; at most %d are allowed", quote(name), len(name), maxNameLen)
	case !re.MatchString(name):
		p.add("metadata.name", "%s is not a valid policy name: use lowercase letters, digits and '-' (optionally after a \"<tier>.\" prefix), starting and ending with a letter or digit", quote(name))
	}
}

// ---- Node ----

func (p *problems) checkNode(s *NodeSpec, st *NodeStatus) {
	if b := s.BGP; b != nil {
		const f = "spec.bgp"
		if *b == (NodeBGPSpec{}) {
			p.add(f, "is empty; remove it or set ipv4Address or ipv6Address")
		}
		if b.IPv4Address != "" {
			p.checkNet(at(f, "ipv4Address"), b.IPv4Address, 4)
		}
		if b.IPv6Address != "" {
			p.checkNet(at(f, "ipv6Address"), b.IPv6Address, 6)
		}
		if b.ASNumber != nil && *b.ASNumber == 0 {
			p.add(at(f, "asNumber"), "0 is not a valid AS number")
		}
		p.checkOptionalIP(at(f, "ipv4IPIPTunnelAddr"), b.IPv4IPIPTunnelAddr, 4)
		p.checkOptionalIP(at(f, "routeReflectorClusterID"), b.RouteReflectorClusterID, 4)
	}
	p.checkOptionalIP("spec.ipv4VXLANTunnelAddr", s.IPv4VXLANTunnelAddr, 4)
	p.checkOptionalIP("spec.ipv6VXLANTunnelAddr", s.IPv6VXLANTunnelAddr, 6)
	if s.VXLANTunnelMACAddr != "" {
		p.checkMAC("spec.vxlanTunnelMACAddr", s.VXLANTunnelMACAddr)
	}
	for i, a := range s.Addresses {
		f := index("spec.addresses", i)
		p.checkNet(at(f, "address"), a.Address, 0)
		if a.Type != "" {
			p.oneOf(at(f, "type"), a.Type, "CalicoNodeIP", "InternalIP", "ExternalIP")
		}
	}
	for i, o := range s.OrchRefs {
		if o.Orchestrator == "" {
			p.add(at(index("spec.orchRefs", i), "orchestrator"), "is required")
		}
	}
	if st.MTU < 0 || st.MTU > math.MaxUint16 {
		p.add("status.mtu", "%d is not an MTU", st.MTU)
	}
	if st.LastHeartbeat != "" {
		if _, err := time.Parse(time.RFC3339, st.LastHeartbeat); err != nil {
			p.add("status.lastHeartbeat", "%s is not an RFC 3339 time", quote(st.LastHeartbeat))
		}
	}
}

// ---- IPAM ----

// Values of IPPoolSpec.AllowedUses.
const (
	AllowedUseWorkload = "Workload"
	AllowedUseTunnel   = "Tunnel"
)

var (
	linkLocalV4 = netip.MustParsePrefix("169.254.0.0/16")
	linkLocalV6 = netip.MustParsePrefix("fe80::/10")
	// Ranges no pool may touch (Tabby adds loopback and multicast to Calico's link-local rule).
	reservedRanges = []netip.Prefix{
		linkLocalV4, linkLocalV6,
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("224.0.0.0/4"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("ff00::/8"),
	}
)

func (p *problems) checkIPPool(s *IPPoolSpec) {
	var pfx netip.Prefix
	switch {
	case s.CIDR == "":
		p.add("spec.cidr", "is required")
	default:
		var err error
		pfx, err = netip.ParsePrefix(s.CIDR)
		if err != nil {
			p.add("spec.cidr", "%s is not a CIDR", quote(s.CIDR))
			break
		}
		if m := pfx.Masked(); m != pfx {
			p.add("spec.cidr", "%s has host bits set; did you mean %s?", quote(s.CIDR), quote(m.String()))
			pfx = netip.Prefix{}
			break
		}
		if pfx.String() != s.CIDR {
			p.add("spec.cidr", "%s is not in canonical form; write %s", quote(s.CIDR), quote(pfx.String()))
		}
		for _, r := range reservedRanges {
			if r.Overlaps(pfx) {
				p.add("spec.cidr", "%s overlaps the reserved range %s", quote(s.CIDR), r)
				break
			}
		}
	}
	v6 := pfx.IsValid() && !pfx.Addr().Is4()
	if pfx.IsValid() {
		ver, lo, hi := 4, 20, 32
		if v6 {
			ver, lo, hi = 6, 116, 128
		}
		bs := s.EffectiveBlockSize()
		switch {
		case bs < lo || bs > hi:
			p.add("spec.blockSize", "%d is not allowed for an IPv%d pool; use %d to %d", bs, ver, lo, hi)
		case bs < pfx.Bits():
			p.add("spec.blockSize", "%d is larger than the pool %s; a pool must hold at least one block", bs, s.CIDR)
		}
	}
	modes := []string{EncapAlways, EncapCrossSubnet, EncapNever}
	ipipOn := s.IPIPMode != "" && s.IPIPMode != EncapNever
	vxlanOn := s.VXLANMode != "" && s.VXLANMode != EncapNever
	if s.IPIPMode != "" && !p.oneOf("spec.ipipMode", s.IPIPMode, modes...) {
		ipipOn = false
	}
	if s.VXLANMode != "" && !p.oneOf("spec.vxlanMode", s.VXLANMode, modes...) {
		vxlanOn = false
	}
	if ipipOn && vxlanOn {
		p.add("spec.vxlanMode", "%s is not allowed with ipipMode %s: enable at most one encapsulation", quote(s.VXLANMode), quote(s.IPIPMode))
	}
	if ipipOn && v6 {
		p.add("spec.ipipMode", "%s is not allowed: IPIP carries IPv4 only; use vxlanMode on an IPv6 pool", quote(s.IPIPMode))
	}
	p.checkSelector("spec.nodeSelector", s.NodeSelector)
	seen := map[string]bool{}
	for i, u := range s.AllowedUses {
		f := index("spec.allowedUses", i)
		if !p.oneOf(f, u, AllowedUseWorkload, AllowedUseTunnel) {
			continue
		}
		if seen[u] {
			p.add(f, "%s is listed twice", quote(u))
		}
		seen[u] = true
	}
}

func (p *problems) checkIPAMConfig(s *IPAMConfigSpec) {
	if s.MaxBlocksPerHost < 0 {
		p.add("spec.maxBlocksPerHost", "%d is negative; use 0 for no limit", s.MaxBlocksPerHost)
	}
	if s.AutoAllocateBlocks != nil && !*s.AutoAllocateBlocks && !s.StrictAffinity {
		p.add("spec.autoAllocateBlocks", "false requires strictAffinity: true (otherwise no block could ever be used)")
	}
	p.checkDuration("spec.leakGracePeriod", s.LeakGracePeriod, false)
}

// ---- BGP ----

var (
	standardCommunity = regexp.MustCompile(`^(\d+):(\d+)$`)
	largeCommunity    = regexp.MustCompile(`^(\d+):(\d+):(\d+)$`)
)

// isCommunity reports whether s is a standard (aa:nn, 16-bit parts) or
// large (aa:nn:mm, 32-bit parts) BGP community.
func (p *problems) checkIPReservation(s *IPReservationSpec) {
	if len(s.ReservedCIDRs) == 0 {
		p.add("spec.reservedCIDRs", "is required: list at least one CIDR or address")
	}
	for i, n := range s.ReservedCIDRs {
		p.checkNet(index("spec.reservedCIDRs", i), n, 0)
	}
}

func isCommunity(s string) bool {
	var parts []string
	bits := 16
	if m := standardCommunity.FindStringSubmatch(s); m != nil {
		parts = m[1:]
	} else if m := largeCommunity.FindStringSubmatch(s); m != nil {
		parts, bits = m[1:], 32
	} else {
		return false
	}
	for _, x := range parts {
		if _, err := strconv.ParseUint(x, 10, bits); err != nil {
			return false
		}
	}
	return true
}

func (p *problems) checkBGPConfiguration(name string, s *BGPConfigurationSpec) {
	if s.LogSeverityScreen != "" {
		p.oneOf("spec.logSeverityScreen", s.LogSeverityScreen, logLevels...)
	}
	if s.ASNumber != nil && *s.ASNumber == 0 {
		p.add("spec.asNumber", "0 is not a valid AS number")
	}
	if s.BindMode != "" {
		p.oneOf("spec.bindMode", s.BindMode, "None", "NodeIP")
	}
	for _, l := range []struct {
		field string
		cidrs []ServiceCIDR
	}{{"spec.serviceClusterIPs", s.ServiceClusterIPs}, {"spec.serviceExternalIPs", s.ServiceExternalIPs}, {"spec.serviceLoadBalancerIPs", s.ServiceLoadBalancerIPs}} {
		for i, c := range l.cidrs {
			p.checkNet(at(index(l.field, i), "cidr"), c.CIDR, 0)
		}
	}
	names := map[string]bool{}
	for i, c := range s.Communities {
		f := index("spec.communities", i)
		if c.Name == "" {
			p.add(at(f, "name"), "is required")
		} else if names[c.Name] {
			p.add(at(f, "name"), "%s is defined twice", quote(c.Name))
		}
		names[c.Name] = true
		if !isCommunity(c.Value) {
			p.add(at(f, "value"), "%s is not a BGP community: use aa:nn (16-bit numbers) or aa:nn:mm (32-bit numbers)", quote(c.Value))
		}
	}
	if len(s.Communities) > 0 && len(s.PrefixAdvertisements) == 0 {
		p.add("spec.communities", "communities are defined but no prefixAdvertisements use them")
	}
	for i, a := range s.PrefixAdvertisements {
		f := index("spec.prefixAdvertisements", i)
		p.checkNet(at(f, "cidr"), a.CIDR, 0)
		for j, c := range a.Communities {
			if !isCommunity(c) && !names[c] {
				p.add(index(at(f, "communities"), j), "%s is neither a community value (aa:nn or aa:nn:mm) nor a name defined in spec.communities", quote(c))
			}
		}
	}
	meshOff := s.NodeToNodeMeshEnabled != nil && !*s.NodeToNodeMeshEnabled
	if s.NodeMeshPassword != nil {
		p.checkPassword("spec.nodeMeshPassword", s.NodeMeshPassword)
		if meshOff {
			p.add("spec.nodeMeshPassword", "is not allowed when nodeToNodeMeshEnabled is false")
		}
	}
	if s.NodeMeshMaxRestartTime != nil {
		p.checkDuration("spec.nodeMeshMaxRestartTime", s.NodeMeshMaxRestartTime, false)
		if meshOff {
			p.add("spec.nodeMeshMaxRestartTime", "is not allowed when nodeToNodeMeshEnabled is false")
		}
	}
	if s.NodeMeshBFD != nil {
		p.checkBFD("spec.nodeMeshBFD", s.NodeMeshBFD)
		if meshOff {
			p.add("spec.nodeMeshBFD", "is not allowed when nodeToNodeMeshEnabled is false")
		}
	}
	for i, n := range s.IgnoredInterfaces {
		if n == "*" || !ignoredInterfaceRegex.MatchString(n) {
			p.add(index("spec.ignoredInterfaces", i), "%s is not an interface name or pattern: use 1 to 15 letters, digits, '_', '.', '-' or '*' (not '*' alone)", quote(n))
		}
	}
	if name != "default" {
		// Per-node overrides may only set what Calico lets a node override.
		global := []struct {
			field string
			set   bool
		}{
			{"spec.nodeToNodeMeshEnabled", s.NodeToNodeMeshEnabled != nil},
			{"spec.asNumber", s.ASNumber != nil},
			{"spec.serviceClusterIPs", len(s.ServiceClusterIPs) > 0},
			{"spec.serviceExternalIPs", len(s.ServiceExternalIPs) > 0},
			{"spec.serviceLoadBalancerIPs", len(s.ServiceLoadBalancerIPs) > 0},
			{"spec.nodeMeshPassword", s.NodeMeshPassword != nil},
			{"spec.nodeMeshMaxRestartTime", s.NodeMeshMaxRestartTime != nil},
			{"spec.nodeMeshBFD", s.NodeMeshBFD != nil},
		}
		for _, g := range global {
			if g.set {
				p.add(g.field, "may only be set in the BGPConfiguration named \"default\" (set a node's AS number in its Node resource)")
			}
		}
	}
}

// ParsePeerIP reads a BGPPeer peerIP: "192.0.2.1", "192.0.2.1:1179",
// "2001:db8::1" or "[2001:db8::1]:1179". Port 0 means the default (179, or
// the peer's listenPort).
func ParsePeerIP(s string) (netip.Addr, uint16, error) {
	if a, err := parseAddr(s); err == nil {
		return a, 0, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Zone() != "" || ap.Port() == 0 {
		return netip.Addr{}, 0, fmt.Errorf("%s is not an IP address, IPv4:port or [IPv6]:port", quote(s))
	}
	return ap.Addr(), ap.Port(), nil
}

func (p *problems) checkBGPPeer(s *BGPPeerSpec) {
	p.checkOptionalName("spec.node", s.Node)
	p.checkSelector("spec.nodeSelector", s.NodeSelector)
	p.checkSelector("spec.peerSelector", s.PeerSelector)
	if s.Node != "" && s.NodeSelector != "" {
		p.add("spec.nodeSelector", "is not allowed together with node: set one or neither")
	}
	var peer netip.Addr
	switch {
	case s.PeerIP != "" && s.PeerSelector != "":
		p.add("spec.peerSelector", "is not allowed together with peerIP: set exactly one")
	case s.PeerIP == "" && s.PeerSelector == "":
		p.add("spec.peerIP", "is required (or set peerSelector)")
	case s.PeerIP != "":
		a, _, err := ParsePeerIP(s.PeerIP)
		if err != nil {
			p.add("spec.peerIP", "%v", err)
		}
		peer = a
		if s.ASNumber == 0 {
			p.add("spec.asNumber", "is required with peerIP")
		}
	case s.PeerSelector != "":
		if s.ASNumber != 0 {
			p.add("spec.asNumber", "is not allowed with peerSelector: the peers' own AS numbers are used")
		}
	}
	if s.Password != nil {
		p.checkPassword("spec.password", s.Password)
	}
	if s.SourceAddress != "" {
		p.oneOf("spec.sourceAddress", s.SourceAddress, "UseNodeIP", "None")
	}
	p.checkDuration("spec.maxRestartTime", s.MaxRestartTime, false)
	p.checkDuration("spec.keepaliveTime", s.KeepaliveTime, true)
	if s.NumAllowedLocalASNumbers != nil && *s.NumAllowedLocalASNumbers < 0 {
		p.add("spec.numAllowedLocalASNumbers", "%d is negative", *s.NumAllowedLocalASNumbers)
	}
	if s.ReachableBy != "" {
		if s.PeerIP == "" {
			p.add("spec.reachableBy", "requires peerIP")
		} else if a, ok := p.checkIP("spec.reachableBy", s.ReachableBy, 0); ok && peer.IsValid() && ipVersion(a) != ipVersion(peer) {
			p.add("spec.reachableBy", "%s and peerIP %s are of different IP versions", quote(s.ReachableBy), quote(s.PeerIP))
		}
	}
	for i, f := range s.Filters {
		p.checkName(index("spec.filters", i), f)
	}
	if s.BFD != nil {
		p.checkBFD("spec.bfd", s.BFD)
	}
}

// checkBFD checks BFD timers: intervals of MinBFDIntervalMs..MaxBFDIntervalMs
// milliseconds and a multiplier of 1..255.
func (p *problems) checkBFD(field string, b *BFD) {
	for _, f := range []struct {
		name string
		v    *int64
	}{{"minRxMs", b.MinRxMs}, {"minTxMs", b.MinTxMs}} {
		if f.v != nil && (*f.v < MinBFDIntervalMs || *f.v > MaxBFDIntervalMs) {
			p.add(at(field, f.name), "%d: must be %d..%d (milliseconds)", *f.v, MinBFDIntervalMs, MaxBFDIntervalMs)
		}
	}
	if b.Multiplier != nil && (*b.Multiplier < 1 || *b.Multiplier > 255) {
		p.add(at(field, "multiplier"), "%d: must be 1..255", *b.Multiplier)
	}
}

// ---- Felix ----

// Values of FelixConfigurationSpec.DefaultEndpointToHostAction.
const (
	EndpointToHostDrop   = "Drop"
	EndpointToHostReturn = "Return"
	EndpointToHostAccept = "Accept"
)

func (p *problems) checkFelixConfiguration(s *FelixConfigurationSpec) {
	if s.DefaultEndpointToHostAction != "" {
		p.oneOf("spec.defaultEndpointToHostAction", s.DefaultEndpointToHostAction, EndpointToHostDrop, EndpointToHostReturn, EndpointToHostAccept)
	}
	for _, l := range []struct {
		field string
		ports *[]ProtoPort
	}{{"spec.failsafeInboundHostPorts", s.FailsafeInboundHostPorts}, {"spec.failsafeOutboundHostPorts", s.FailsafeOutboundHostPorts}} {
		if l.ports == nil {
			continue
		}
		for i, pp := range *l.ports {
			f := index(l.field, i)
			p.oneOf(at(f, "protocol"), pp.Protocol, "TCP", "UDP", "SCTP")
			if pp.Port == 0 {
				p.add(at(f, "port"), "0 is not a port; use 1 to 65535")
			}
			if pp.Net != "" {
				p.checkNet(at(f, "net"), pp.Net, 0)
			}
		}
	}
	if s.InterfacePrefix != "" {
		for _, pre := range strings.Split(s.InterfacePrefix, ",") {
			if !interfaceRegex.MatchString(pre) {
				p.add("spec.interfacePrefix", "%s is not an interface prefix (or a comma-separated list of them)", quote(s.InterfacePrefix))
				break
			}
		}
	}
	if s.LogSeverityScreen != "" {
		p.oneOf("spec.logSeverityScreen", s.LogSeverityScreen, logLevels...)
	}
	for _, m := range []struct {
		field string
		v     int
	}{{"spec.ipipMTU", s.IPIPMTU}, {"spec.vxlanMTU", s.VXLANMTU}} {
		if m.v < 0 || m.v > math.MaxUint16 {
			p.add(m.field, "%d is not an MTU", m.v)
		}
	}
	if s.VXLANPort < 0 || s.VXLANPort > math.MaxUint16 {
		p.add("spec.vxlanPort", "%d is not a port; use 1 to 65535", s.VXLANPort)
	}
	if s.VXLANVNI < 0 || s.VXLANVNI > 1<<24-1 {
		p.add("spec.vxlanVNI", "%d is not a VXLAN VNI; use 1 to 16777215", s.VXLANVNI)
	}
	p.checkOptionalIP("spec.natOutgoingAddress", s.NATOutgoingAddress, 4)
}

// ---- Endpoints and sets ----

func (p *problems) checkProfiles(field string, profiles []string) {
	for i, pr := range profiles {
		p.checkName(index(field, i), pr)
	}
}

func (p *problems) checkEndpointPort(f string, name string, nameRequired bool, proto Protocol, port uint16) {
	switch {
	case name == "" && nameRequired:
		p.add(at(f, "name"), "is required")
	case name != "" && !isK8sPortName(name):
		p.add(at(f, "name"), "%s is not a port name: use at most 15 lowercase letters, digits and single '-', with at least one letter", quote(name))
	}
	if !proto.SupportsPorts() {
		p.add(at(f, "protocol"), "%s is not allowed; use TCP, UDP, SCTP or UDPLite", quote(string(proto)))
	}
	if port == 0 {
		p.add(at(f, "port"), "0 is not a port; use 1 to 65535")
	}
}

func (p *problems) checkHostEndpoint(s *HostEndpointSpec) {
	if s.Node == "" {
		p.add("spec.node", "is required")
	} else {
		p.checkName("spec.node", s.Node)
	}
	if s.InterfaceName == "" && len(s.ExpectedIPs) == 0 {
		p.add("spec.interfaceName", "is required unless expectedIPs are given")
	}
	if s.InterfaceName != "" && s.InterfaceName != "*" {
		p.checkInterfaceName("spec.interfaceName", s.InterfaceName)
	}
	for i, ip := range s.ExpectedIPs {
		p.checkIP(index("spec.expectedIPs", i), ip, 0)
	}
	p.checkProfiles("spec.profiles", s.Profiles)
	names := map[string]bool{}
	for i, pt := range s.Ports {
		f := index("spec.ports", i)
		p.checkEndpointPort(f, pt.Name, true, pt.Protocol, pt.Port)
		if pt.Name != "" && names[pt.Name] {
			p.add(at(f, "name"), "%s is used by another port of this endpoint", quote(pt.Name))
		}
		names[pt.Name] = true
	}
}

func (p *problems) checkWorkloadEndpoint(s *WorkloadEndpointSpec) {
	if s.Node == "" {
		p.add("spec.node", "is required")
	} else {
		p.checkName("spec.node", s.Node)
	}
	if s.ContainerID != "" && !containerIDRegex.MatchString(s.ContainerID) {
		p.add("spec.containerID", "%s is not a container ID: use letters, digits and '-', starting and ending with a letter or digit", quote(s.ContainerID))
	}
	var nets []netip.Prefix
	for i, n := range s.IPNetworks {
		f := index("spec.ipNetworks", i)
		pfx, err := ParseNet(n)
		if err != nil {
			p.add(f, "%v", err)
			continue
		}
		if !pfx.IsSingleIP() {
			p.add(f, "%s holds more than one address; an endpoint's networks are single addresses (/32 or /128)", quote(n))
			continue
		}
		nets = append(nets, pfx)
	}
	for i, nat := range s.IPNATs {
		f := index("spec.ipNATs", i)
		in, ok1 := p.checkIP(at(f, "internalIP"), nat.InternalIP, 0)
		ex, ok2 := p.checkIP(at(f, "externalIP"), nat.ExternalIP, 0)
		if ok1 && ok2 && ipVersion(in) != ipVersion(ex) {
			p.add(at(f, "externalIP"), "%s is not of the same IP version as internalIP %s", quote(nat.ExternalIP), quote(nat.InternalIP))
		}
		if ok1 {
			found := false
			for _, n := range nets {
				found = found || n.Contains(in)
			}
			if !found {
				p.add(at(f, "internalIP"), "%s is not one of the endpoint's ipNetworks", quote(nat.InternalIP))
			}
		}
	}
	p.checkOptionalIP("spec.ipv4Gateway", s.IPv4Gateway, 4)
	p.checkOptionalIP("spec.ipv6Gateway", s.IPv6Gateway, 6)
	p.checkProfiles("spec.profiles", s.Profiles)
	if s.InterfaceName != "" {
		p.checkInterfaceName("spec.interfaceName", s.InterfaceName)
	}
	if s.MAC != "" {
		p.checkMAC("spec.mac", s.MAC)
	}
	names := map[string]bool{}
	for i, pt := range s.Ports {
		f := index("spec.ports", i)
		// As Calico: a port needs a name unless it is a host port.
		p.checkEndpointPort(f, pt.Name, pt.HostPort == 0, pt.Protocol, pt.Port)
		if pt.Name != "" && names[pt.Name] {
			p.add(at(f, "name"), "%s is used by another port of this endpoint", quote(pt.Name))
		}
		names[pt.Name] = true
		p.checkOptionalIP(at(f, "hostIP"), pt.HostIP, 0)
		if pt.HostIP != "" && pt.HostPort == 0 {
			p.add(at(f, "hostIP"), "requires hostPort")
		}
	}
}

func (p *problems) checkNetworkSet(m *ObjectMeta, s *NetworkSetSpec) {
	if _, ok := m.Labels[LabelNamespace]; ok {
		p.add("metadata.labels", "key %s is reserved for endpoints' namespaces", quote(LabelNamespace))
	}
	for i, n := range s.Nets {
		p.checkNet(index("spec.nets", i), n, 0)
	}
	p.checkDomains("spec.allowedEgressDomains", s.AllowedEgressDomains)
}
