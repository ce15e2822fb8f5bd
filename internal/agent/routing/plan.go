package routing

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
)

// Device names and tunnel defaults (Calico's, with "tabby" for "calico").
const (
	VXLANDeviceName = "vxlan.tabby"
	IPIPDeviceName  = "tunl0"
	DefaultVXLANVNI = 4096
	// DefaultVXLANPort is the IANA VXLAN port (Linux's default is 8472).
	DefaultVXLANPort = 4789
	// Encapsulation overhead in bytes (IPv4 outer header).
	VXLANOverhead = 50
	IPIPOverhead  = 20
)

// Plan is what one host must do. Build it with Desired.
type Plan struct {
	Node string
	// NodeIP is the host's IPv4 address and subnet (invalid: unknown).
	NodeIP   netip.Prefix
	NodeIPv6 netip.Prefix
	// BGP is the speaker's configuration; nil runs no speaker.
	BGP *BGPPlan
	// Adverts are the prefixes the host advertises: its blocks and its
	// borrowed addresses that lie in a pool exported over BGP.
	Adverts []netip.Prefix
	// Routes are the kernel routes derived from the datastore: a blackhole
	// per own block, and the routes to other hosts' blocks in VXLAN pools.
	// Routes learned over BGP are added by Kernel.
	Routes []Route
	// VXLAN is the VXLAN device to keep (nil: none) and VXLANPeers the
	// other hosts reachable through it (static FDB and neighbor entries).
	VXLAN      *VXLANDevice
	VXLANPeers []VXLANPeer
	// IPIP is the IP-in-IP device to keep (nil: none).
	IPIP *IPIPDevice
	// VXLANTunnel and IPIPTunnel say whether the host needs a tunnel
	// address of that kind and which pools it may come from.
	VXLANTunnel TunnelNeed
	IPIPTunnel  TunnelNeed
	// VXLANMAC says the host needs a VXLAN MAC even without an IPv4
	// tunnel address: an IPv6 pool uses VXLAN (IPv6 rides the IPv4
	// vxlan.tabby, next hop the peer's link-local address; see
	// VXLANPeer.TunnelAddr6).
	VXLANMAC bool
	// Problems are conditions an operator should know about; the plan is
	// still usable.
	Problems []string

	pools    []poolInfo
	own      map[netip.Prefix]bool   // own blocks and borrowed /32s
	owner    map[netip.Prefix]string // every routed block and borrowed address → node
	nodes    map[string]*nodeInfo
	learnDev bool // an IPIP device exists for learned routes
}

// TunnelNeed says whether a host needs a tunnel address and from which pools.
type TunnelNeed struct {
	Want bool
	// Pools are the names of the pools the address may come from, and
	// CIDRs their ranges: an address outside them is replaced.
	Pools []string
	CIDRs []netip.Prefix
}

// Has reports whether addr is a usable tunnel address for this need.
func (t TunnelNeed) Has(addr netip.Addr) bool {
	for _, c := range t.CIDRs {
		if c.Contains(addr) {
			return true
		}
	}
	return false
}

// RouteType is unicast or blackhole.
type RouteType int

const (
	RouteUnicast RouteType = iota
	RouteBlackhole
)

// Route is one kernel route in the main table, made by Tabby's router.
type Route struct {
	Dst     netip.Prefix
	Type    RouteType
	Gateway netip.Addr // invalid: none
	Dev     string     // "": the kernel picks the device for Gateway
	OnLink  bool
}

func (r Route) String() string {
	if r.Type == RouteBlackhole {
		return "blackhole " + r.Dst.String()
	}
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Gateway.IsValid() {
		b.WriteString(" via " + r.Gateway.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	return b.String()
}

// CompareRoutes orders routes by destination, then by the rest.
func CompareRoutes(a, b Route) int {
	if c := comparePrefix(a.Dst, b.Dst); c != 0 {
		return c
	}
	return strings.Compare(a.String(), b.String())
}

// VXLANDevice is the host's VXLAN device.
type VXLANDevice struct {
	Name    string
	VNI     int
	Port    int
	LocalIP netip.Addr // the node IP: outer source address
	Addr    netip.Addr // the tunnel address (/32 on the device)
	MAC     string
	// MTU is the device MTU; 0: the uplink's minus VXLANOverhead.
	MTU int
}

// VXLANPeer is another host reachable through the VXLAN device.
type VXLANPeer struct {
	Node       string
	NodeIP     netip.Addr // outer destination (FDB entry)
	TunnelAddr netip.Addr // inner IPv4 next hop (neighbor entry; invalid: none)
	MAC        string
	// TunnelAddr6 is the inner IPv6 next hop (IPv6 neighbor entry) when an
	// IPv6 pool uses VXLAN: the link-local address of the peer's device,
	// derived from its MAC (VXLANLinkLocal).
	TunnelAddr6 netip.Addr
}

// VXLANLinkLocal is the IPv6 link-local address (modified EUI-64) of a
// VXLAN device with MAC mac: what the kernel gives the device, and the
// next hop of IPv6 routes to the blocks of the host that owns it. Invalid
// when mac is not a 48-bit MAC.
func VXLANLinkLocal(mac string) netip.Addr {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return netip.Addr{}
	}
	a := [16]byte{0: 0xfe, 1: 0x80, 8: hw[0] ^ 0x02, 9: hw[1], 10: hw[2], 11: 0xff, 12: 0xfe, 13: hw[3], 14: hw[4], 15: hw[5]}
	return netip.AddrFrom16(a)
}

// IPIPDevice is the host's IP-in-IP device.
type IPIPDevice struct {
	Name    string
	LocalIP netip.Addr // the node IP (its link is the MTU reference)
	Addr    netip.Addr // the tunnel address (/32 on the device)
	// MTU is the device MTU; 0: the uplink's minus IPIPOverhead.
	MTU int
}

// KernelState is everything the kernel driver keeps: devices, neighbors
// and routes. A nil device means "none of ours".
type KernelState struct {
	VXLAN      *VXLANDevice
	VXLANPeers []VXLANPeer
	IPIP       *IPIPDevice
	Routes     []Route
}

// poolInfo is a parsed pool.
type poolInfo struct {
	name         string
	cidr         netip.Prefix
	ipip, vxlan  string // Always, CrossSubnet or Never
	disabled     bool
	noExport     bool
	selectsNode  bool // nodeSelector matches this host
	allowsTunnel bool
}

// nodeInfo is a parsed Node.
type nodeInfo struct {
	name      string
	ip4, ip6  netip.Prefix
	asn       api.ASNumber // 0: the cluster's
	clusterID string
	labels    map[string]string
	vxlanAddr netip.Addr
	vxlanMAC  string
	ipipAddr  netip.Addr
}

// Desired computes the plan of in.Node. It never fails: inconsistent input
// (an unparsable pool, a node without address) is left out and reported in
// Plan.Problems.
func Desired(in *Input) *Plan {
	p := &Plan{
		Node:  in.Node,
		own:   map[netip.Prefix]bool{},
		owner: map[netip.Prefix]string{},
		nodes: map[string]*nodeInfo{},
	}
	for _, n := range in.Nodes {
		ni := parseNode(n)
		if prev, ok := p.nodes[ni.name]; ok && prev != nil {
			continue
		}
		p.nodes[ni.name] = ni
	}
	self := p.nodes[in.Node]
	if self == nil {
		self = &nodeInfo{name: in.Node}
		p.nodes[in.Node] = self
	}
	if in.NodeIP.IsValid() && in.NodeIP.Addr().Is4() {
		self.ip4 = in.NodeIP
	}
	p.NodeIP, p.NodeIPv6 = self.ip4, self.ip6
	if !p.NodeIP.IsValid() {
		p.problem("node %s has no IPv4 address: no BGP, no tunnels", in.Node)
	}
	p.parsePools(in, self)

	// Ownership of blocks and borrowed addresses.
	blocks := slices.Clone(in.Blocks)
	slices.SortFunc(blocks, func(a, b BlockAffinity) int {
		return cmp.Or(comparePrefix(a.CIDR, b.CIDR), strings.Compare(a.Node, b.Node))
	})
	for _, b := range blocks {
		if prev, ok := p.owner[b.CIDR]; ok && prev != b.Node {
			p.problem("block %s is affine to both %s and %s; routing it to %s", b.CIDR, prev, b.Node, prev)
			continue
		}
		p.owner[b.CIDR] = b.Node
	}
	borrowed := slices.Clone(in.Borrowed)
	slices.SortFunc(borrowed, func(a, b BorrowedAddr) int {
		return cmp.Or(a.Addr.Compare(b.Addr), strings.Compare(a.Node, b.Node))
	})
	for _, b := range borrowed {
		pfx := netip.PrefixFrom(b.Addr, b.Addr.BitLen())
		if _, ok := p.owner[pfx]; !ok {
			p.owner[pfx] = b.Node
		}
	}
	for pfx, node := range p.owner {
		if node == in.Node {
			p.own[pfx] = true
		}
	}

	p.planAdverts()
	p.planTunnels(in, self)
	p.planRoutes(self)
	if !in.DisableBGP && p.NodeIP.IsValid() {
		p.BGP = planBGP(in, p, self)
	}
	slices.SortFunc(p.Routes, CompareRoutes)
	slices.Sort(p.Problems)
	p.Problems = slices.Compact(p.Problems)
	return p
}

func (p *Plan) problem(format string, args ...any) {
	p.Problems = append(p.Problems, fmt.Sprintf(format, args...))
}

func parseNode(n *api.Node) *nodeInfo {
	ni := &nodeInfo{name: n.Name, labels: n.Labels}
	if b := n.Spec.BGP; b != nil {
		if pfx, err := api.ParseNet(b.IPv4Address); err == nil && pfx.Addr().Is4() {
			ni.ip4 = pfx
		}
		if pfx, err := api.ParseNet(b.IPv6Address); err == nil && pfx.Addr().Is6() {
			ni.ip6 = pfx
		}
		if b.ASNumber != nil {
			ni.asn = *b.ASNumber
		}
		ni.clusterID = b.RouteReflectorClusterID
		if a, err := netip.ParseAddr(b.IPv4IPIPTunnelAddr); err == nil && a.Is4() {
			ni.ipipAddr = a
		}
	}
	if a, err := netip.ParseAddr(n.Spec.IPv4VXLANTunnelAddr); err == nil && a.Is4() {
		ni.vxlanAddr = a
	}
	ni.vxlanMAC = n.Spec.VXLANTunnelMACAddr
	return ni
}

func (p *Plan) parsePools(in *Input, self *nodeInfo) {
	for _, pl := range in.Pools {
		cidr, err := netip.ParsePrefix(pl.Spec.CIDR)
		if err != nil {
			p.problem("IP pool %s: cidr %q does not parse; ignored", pl.Name, pl.Spec.CIDR)
			continue
		}
		pi := poolInfo{
			name: pl.Name, cidr: cidr.Masked(),
			ipip: encapMode(pl.Spec.IPIPMode), vxlan: encapMode(pl.Spec.VXLANMode),
			disabled: pl.Spec.Disabled, noExport: pl.Spec.DisableBGPExport,
			allowsTunnel: pl.Spec.AllowsUse(api.AllowedUseTunnel),
		}
		sel := pl.Spec.NodeSelector
		if sel == "" {
			sel = api.DefaultNodeSelector
		}
		s, err := selector.Parse(sel)
		if err != nil {
			p.problem("IP pool %s: nodeSelector %q does not parse; it selects no node", pl.Name, sel)
		} else {
			pi.selectsNode = s.Evaluate(self.labels)
		}
		p.pools = append(p.pools, pi)
	}
	// Most specific pool first, so poolOf finds the innermost.
	slices.SortFunc(p.pools, func(a, b poolInfo) int {
		return cmp.Or(b.cidr.Bits()-a.cidr.Bits(), comparePrefix(a.cidr, b.cidr), strings.Compare(a.name, b.name))
	})
}

func encapMode(s string) string {
	switch s {
	case api.EncapAlways, api.EncapCrossSubnet:
		return s
	}
	return api.EncapNever
}

// poolOf returns the pool containing pfx, or nil.
func (p *Plan) poolOf(pfx netip.Prefix) *poolInfo {
	for i := range p.pools {
		pl := &p.pools[i]
		if pl.cidr.Bits() <= pfx.Bits() && pl.cidr.Contains(pfx.Addr()) {
			return pl
		}
	}
	return nil
}

func (p *Plan) planAdverts() {
	for pfx := range p.own {
		pl := p.poolOf(pfx)
		if pl == nil || pl.noExport {
			continue
		}
		p.Adverts = append(p.Adverts, pfx)
	}
	slices.SortFunc(p.Adverts, comparePrefix)
}

// planTunnels decides the tunnel addresses the host needs and the devices.
func (p *Plan) planTunnels(in *Input, self *nodeInfo) {
	for _, pl := range p.pools {
		if pl.disabled || !pl.selectsNode || !pl.allowsTunnel || !pl.cidr.Addr().Is4() {
			continue
		}
		if pl.vxlan != api.EncapNever {
			p.VXLANTunnel.Pools = append(p.VXLANTunnel.Pools, pl.name)
			p.VXLANTunnel.CIDRs = append(p.VXLANTunnel.CIDRs, pl.cidr)
		}
		if pl.ipip != api.EncapNever {
			p.IPIPTunnel.Pools = append(p.IPIPTunnel.Pools, pl.name)
			p.IPIPTunnel.CIDRs = append(p.IPIPTunnel.CIDRs, pl.cidr)
		}
	}
	slices.Sort(p.VXLANTunnel.Pools)
	slices.Sort(p.IPIPTunnel.Pools)
	p.VXLANTunnel.Want = len(p.VXLANTunnel.Pools) > 0 && p.NodeIP.IsValid()
	p.IPIPTunnel.Want = len(p.IPIPTunnel.Pools) > 0 && p.NodeIP.IsValid()

	anyVXLAN, anyVXLAN6, anyIPIP := false, false, false
	for _, pl := range p.pools {
		anyVXLAN = anyVXLAN || (pl.vxlan != api.EncapNever && pl.cidr.Addr().Is4())
		// IPv6 pools need no tunnel address: every host that routes to
		// them needs the device and a MAC, whichever nodes they select.
		anyVXLAN6 = anyVXLAN6 || (pl.vxlan != api.EncapNever && !pl.disabled && pl.cidr.Addr().Is6())
		anyIPIP = anyIPIP || pl.ipip != api.EncapNever
	}
	p.VXLANMAC = anyVXLAN6 && p.NodeIP.IsValid()
	if (anyVXLAN || anyVXLAN6) && p.NodeIP.IsValid() {
		switch {
		case self.vxlanMAC == "" || (!anyVXLAN6 && !self.vxlanAddr.IsValid()):
			if p.VXLANTunnel.Want {
				p.problem("node %s has no VXLAN tunnel address and MAC yet: VXLAN is not set up", self.name)
			} else if anyVXLAN6 {
				p.problem("node %s has no VXLAN MAC yet: VXLAN of IPv6 is not set up", self.name)
			}
		default:
			if p.VXLANTunnel.Want && !self.vxlanAddr.IsValid() {
				p.problem("node %s has no VXLAN tunnel address yet: VXLAN of IPv4 is not set up", self.name)
			}
			p.VXLAN = &VXLANDevice{
				Name: VXLANDeviceName, VNI: orDefault(in.Felix.VXLANVNI, DefaultVXLANVNI),
				Port: orDefault(in.Felix.VXLANPort, DefaultVXLANPort), LocalIP: p.NodeIP.Addr(),
				Addr: self.vxlanAddr, MAC: self.vxlanMAC, MTU: in.Felix.VXLANMTU,
			}
			for _, n := range p.sortedNodes() {
				if n.name == self.name || !n.ip4.IsValid() || n.vxlanMAC == "" || (!anyVXLAN6 && !n.vxlanAddr.IsValid()) {
					continue
				}
				peer := VXLANPeer{Node: n.name, NodeIP: n.ip4.Addr(), TunnelAddr: n.vxlanAddr, MAC: n.vxlanMAC}
				if anyVXLAN6 {
					peer.TunnelAddr6 = VXLANLinkLocal(n.vxlanMAC)
				}
				p.VXLANPeers = append(p.VXLANPeers, peer)
			}
		}
	}
	if anyIPIP && p.NodeIP.IsValid() && self.ipipAddr.IsValid() {
		p.IPIP = &IPIPDevice{Name: IPIPDeviceName, LocalIP: p.NodeIP.Addr(), Addr: self.ipipAddr, MTU: in.Felix.IPIPMTU}
		p.learnDev = true
	} else if p.IPIPTunnel.Want {
		p.problem("node %s has no IP-in-IP tunnel address yet: IP-in-IP is not set up", self.name)
	}
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func (p *Plan) sortedNodes() []*nodeInfo {
	out := make([]*nodeInfo, 0, len(p.nodes))
	for _, n := range p.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *nodeInfo) int { return strings.Compare(a.name, b.name) })
	return out
}

// planRoutes adds the blackholes of own blocks and the datastore-derived
// routes to other hosts' blocks and borrowed addresses in VXLAN pools.
func (p *Plan) planRoutes(self *nodeInfo) {
	for pfx, node := range p.owner {
		if node == self.name {
			if pfx.Bits() < pfx.Addr().BitLen() {
				p.Routes = append(p.Routes, Route{Dst: pfx, Type: RouteBlackhole})
			}
			continue
		}
		pl := p.poolOf(pfx)
		if pl == nil || pl.vxlan == api.EncapNever {
			continue
		}
		route := p.vxlanRoute
		if pfx.Addr().Is6() {
			route = p.vxlanRoute6
		}
		if r, ok := route(pfx, pl, p.nodes[node], node); ok {
			p.Routes = append(p.Routes, r)
		}
	}
}

func (p *Plan) vxlanRoute(pfx netip.Prefix, pl *poolInfo, n *nodeInfo, name string) (Route, bool) {
	if n == nil || !n.ip4.IsValid() {
		p.problem("%s is on node %s, which has no IPv4 address: not routed", pfx, name)
		return Route{}, false
	}
	if pl.vxlan == api.EncapCrossSubnet && p.sameSubnet(n.ip4.Addr()) {
		return Route{Dst: pfx, Gateway: n.ip4.Addr()}, true
	}
	if p.VXLAN == nil {
		return Route{}, false // reported by planTunnels
	}
	if !n.vxlanAddr.IsValid() || n.vxlanMAC == "" {
		p.problem("%s is on node %s, which has no VXLAN tunnel address yet: not routed", pfx, name)
		return Route{}, false
	}
	return Route{Dst: pfx, Gateway: n.vxlanAddr, Dev: VXLANDeviceName, OnLink: true}, true
}

// vxlanRoute6 routes an IPv6 block (or borrowed address) of another host
// in a VXLAN pool. The underlay is IPv4, as for IPv4 pools: across
// subnets (or always) the route goes through vxlan.tabby to the peer's
// link-local address, whose permanent neighbor entry gives the peer's MAC
// and whose FDB entry the peer's IPv4 node address; CrossSubnet inside the
// subnet routes natively via the peer's IPv6 node address.
func (p *Plan) vxlanRoute6(pfx netip.Prefix, pl *poolInfo, n *nodeInfo, name string) (Route, bool) {
	if n == nil || !n.ip4.IsValid() {
		p.problem("%s is on node %s, which has no IPv4 address: not routed", pfx, name)
		return Route{}, false
	}
	if pl.vxlan == api.EncapCrossSubnet && p.sameSubnet(n.ip4.Addr()) {
		if !n.ip6.IsValid() {
			p.problem("%s is on node %s in this subnet, which has no IPv6 address: not routed", pfx, name)
			return Route{}, false
		}
		return Route{Dst: pfx, Gateway: n.ip6.Addr()}, true
	}
	if p.VXLAN == nil {
		return Route{}, false // reported by planTunnels
	}
	gw := VXLANLinkLocal(n.vxlanMAC)
	if !gw.IsValid() {
		p.problem("%s is on node %s, which has no VXLAN MAC yet: not routed", pfx, name)
		return Route{}, false
	}
	return Route{Dst: pfx, Gateway: gw, Dev: VXLANDeviceName}, true
}

// sameSubnet reports whether a is in this host's subnet.
func (p *Plan) sameSubnet(a netip.Addr) bool {
	return p.NodeIP.IsValid() && p.NodeIP.Masked().Contains(a)
}

// comparePrefix orders prefixes by address, then length.
func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), a.Bits()-b.Bits())
}

// BGPPlan is the configuration of the host's BGP speaker.
type BGPPlan struct {
	RouterID netip.Addr
	ASN      api.ASNumber
	// ListenAddr is the address to listen on (unspecified: all).
	ListenAddr netip.Addr
	ListenPort uint16
	// ClusterID is set when the host is a route reflector.
	ClusterID string
	Peers     []Peer
}

// PeerType says why a session exists, in calicoctl's words.
type PeerType string

const (
	PeerMesh           PeerType = "node-to-node mesh"
	PeerRouteReflector PeerType = "route reflector"
	PeerGlobal         PeerType = "global"
	PeerNodeSpecific   PeerType = "node specific"
)

// Peer is one BGP session.
// BFD is a session's BFD: Multiplier missed packets of MinRx mark the
// peer down.
type BFD struct {
	Enabled      bool
	MinRx, MinTx time.Duration
	Multiplier   uint8
}

// bfdOf resolves a resource's BFD settings (nil or disabled: off).
func bfdOf(b *api.BFD) BFD {
	if b == nil || !b.Enabled {
		return BFD{}
	}
	rx, tx, m := b.Timers()
	return BFD{Enabled: true, MinRx: time.Duration(rx) * time.Millisecond, MinTx: time.Duration(tx) * time.Millisecond,
		Multiplier: uint8(min(max(m, 1), 255))}
}

type Peer struct {
	Address netip.Addr
	// Port is the peer's port (0: 179).
	Port uint16
	ASN  api.ASNumber
	Type PeerType
	// Node names the peer when it is a Tabby node; Source the BGPPeer
	// the session comes from ("" for the mesh).
	Node   string
	Source string
	// LocalAddress is the source address of the session (invalid: any).
	LocalAddress netip.Addr
	// Password is where the TCP-MD5 password comes from (nil: none).
	Password *api.BGPPassword
	// RouteReflectorClient: this host reflects routes to the peer.
	RouteReflectorClient bool
	// KeepOriginalNextHop: routes sent to this (eBGP) peer keep their next hop.
	KeepOriginalNextHop bool
	// MaxRestartTime is the graceful-restart time (0: the default).
	MaxRestartTime time.Duration
	// KeepaliveTime is the keepalive interval (0: the default).
	KeepaliveTime time.Duration
	// TTLSecurity is the number of hops allowed (0: off).
	TTLSecurity uint8
	// AllowOwnAS is how often the local AS may appear in received paths.
	AllowOwnAS int32
	// BFD is the session's BFD (zero: off).
	BFD BFD
	// Passive: this host waits for the peer to connect. Between two Tabby
	// nodes exactly one side connects (the one with the higher address),
	// so the two never open colliding connections.
	Passive bool
}
