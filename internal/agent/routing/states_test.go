package routing_test

import (
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/api"
)

// Builders for the representative states of the golden tests.

func node(name, ip string, labels map[string]string, opts ...func(*api.Node)) *api.Node {
	n := &api.Node{ObjectMeta: api.ObjectMeta{Name: name, Labels: labels}}
	n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: ip}
	for _, o := range opts {
		o(n)
	}
	return n
}

func asn(a api.ASNumber) func(*api.Node) { return func(n *api.Node) { n.Spec.BGP.ASNumber = &a } }

func clusterID(id string) func(*api.Node) {
	return func(n *api.Node) { n.Spec.BGP.RouteReflectorClusterID = id }
}

func vxlanTunnel(addr, mac string) func(*api.Node) {
	return func(n *api.Node) { n.Spec.IPv4VXLANTunnelAddr, n.Spec.VXLANTunnelMACAddr = addr, mac }
}

func ipipTunnel(addr string) func(*api.Node) {
	return func(n *api.Node) { n.Spec.BGP.IPv4IPIPTunnelAddr = addr }
}

func ipv6(addr string) func(*api.Node) { return func(n *api.Node) { n.Spec.BGP.IPv6Address = addr } }

func pool(name, cidr, ipip, vxlan string, opts ...func(*api.IPPool)) *api.IPPool {
	p := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: name}, Spec: api.IPPoolSpec{CIDR: cidr, IPIPMode: ipip, VXLANMode: vxlan}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func peer(name string, spec api.BGPPeerSpec) *api.BGPPeer {
	return &api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: name}, Spec: spec}
}

func blocks(kv ...string) []routing.BlockAffinity {
	var out []routing.BlockAffinity
	for i := 0; i < len(kv); i += 2 {
		out = append(out, routing.BlockAffinity{Node: kv[i], CIDR: netip.MustParsePrefix(kv[i+1])})
	}
	return out
}

func borrowed(kv ...string) []routing.BorrowedAddr {
	var out []routing.BorrowedAddr
	for i := 0; i < len(kv); i += 2 {
		out = append(out, routing.BorrowedAddr{Node: kv[i], Addr: netip.MustParseAddr(kv[i+1])})
	}
	return out
}

func boolp(b bool) *bool { return &b }

func asnp(a api.ASNumber) *api.ASNumber { return &a }

// state is one golden case: an input seen from one node.
type state struct {
	name string
	in   routing.Input
}

func states() []state {
	rack1 := map[string]string{"rack": "r1"}
	rack2 := map[string]string{"rack": "r2"}
	threeNodes := []*api.Node{
		node("h1", "10.101.1.11/24", rack1),
		node("h2", "10.101.1.12/24", rack1),
		node("h3", "10.101.1.13/24", rack1),
	}
	threeBlocks := blocks("h1", "10.244.0.0/26", "h2", "10.244.0.64/26", "h3", "10.244.0.128/26", "h1", "10.244.1.0/26")
	plainPool := []*api.IPPool{pool("default-ipv4-ippool", "10.244.0.0/16", "Never", "Never")}

	rrNodes := []*api.Node{
		node("h1", "10.101.1.11/24", rack1),
		node("h2", "10.101.1.12/24", rack1),
		node("rr1", "10.101.1.20/24", map[string]string{"route-reflector": "true"}, clusterID("224.0.0.1")),
		node("rr2", "10.101.1.21/24", map[string]string{"route-reflector": "true"}, clusterID("224.0.0.1")),
	}
	rrPeers := []*api.BGPPeer{peer("peer-with-route-reflectors", api.BGPPeerSpec{NodeSelector: "all()", PeerSelector: "route-reflector == 'true'"})}
	meshOff := api.BGPConfigurationSpec{NodeToNodeMeshEnabled: boolp(false)}

	torNodes := []*api.Node{
		node("h1", "10.101.1.11/24", rack1, asn(65101)),
		node("h2", "10.101.1.12/24", rack1, asn(65101)),
		node("h3", "10.102.1.11/24", rack2, asn(65102)),
	}
	ttl := uint8(1)
	torPeers := []*api.BGPPeer{
		peer("rack1-tor", api.BGPPeerSpec{NodeSelector: "rack == 'r1'", PeerIP: "10.101.1.1", ASNumber: 65000,
			Password: &api.BGPPassword{Value: "s3cret"}, KeepaliveTime: &api.Duration{Duration: 10 * time.Second}}),
		peer("rack2-tor", api.BGPPeerSpec{NodeSelector: "rack == 'r2'", PeerIP: "10.102.1.1:1179", ASNumber: 65000,
			Password: &api.BGPPassword{File: "/etc/tabby/bgp-password"}, KeepOriginalNextHop: true, TTLSecurity: &ttl}),
		peer("h1-extra", api.BGPPeerSpec{Node: "h1", PeerIP: "192.0.2.7", ASNumber: 64999, SourceAddress: "None",
			MaxRestartTime: &api.Duration{Duration: 5 * time.Minute}}),
	}

	vxNodes := []*api.Node{
		node("h1", "10.101.1.11/24", rack1, vxlanTunnel("10.244.0.1", "66:0a:f4:00:01:01")),
		node("h2", "10.101.1.12/24", rack1, vxlanTunnel("10.244.0.65", "66:0a:f4:00:41:01")),
		node("h3", "10.102.1.11/24", rack2, vxlanTunnel("10.244.0.129", "66:0a:f4:00:81:01")),
		node("h4", "10.102.1.12/24", rack2),
	}
	vxBlocks := blocks("h1", "10.244.0.0/26", "h2", "10.244.0.64/26", "h3", "10.244.0.128/26", "h4", "10.244.0.192/26")

	vx6Nodes := []*api.Node{
		node("h1", "10.101.1.11/24", rack1, ipv6("fd00:101::11/64"), vxlanTunnel("10.244.0.1", "66:0a:f4:00:01:01")),
		node("h2", "10.101.1.12/24", rack1, ipv6("fd00:101::12/64"), vxlanTunnel("10.244.0.65", "66:0a:f4:00:41:01")),
		node("h3", "10.102.1.11/24", rack2, ipv6("fd00:102::11/64"), vxlanTunnel("10.244.0.129", "66:0a:f4:00:81:01")),
		node("h4", "10.102.1.12/24", rack2, ipv6("fd00:102::12/64")),
	}
	vx6MACOnly := []*api.Node{
		node("h1", "10.101.1.11/24", rack1, ipv6("fd00:101::11/64"), vxlanTunnel("", "66:0a:f4:00:01:01")),
		node("h2", "10.101.1.12/24", rack1, ipv6("fd00:101::12/64"), vxlanTunnel("", "66:0a:f4:00:41:01")),
		node("h3", "10.102.1.11/24", rack2, ipv6("fd00:102::11/64"), vxlanTunnel("", "66:0a:f4:00:81:01")),
	}
	vx6Blocks := append(blocks("h1", "fd00:244::/122", "h2", "fd00:244::40/122", "h3", "fd00:244::80/122", "h4", "fd00:244::c0/122"), vxBlocks...)

	ipNodes := []*api.Node{
		node("h1", "10.101.1.11/24", rack1, ipipTunnel("10.244.0.1")),
		node("h2", "10.101.1.12/24", rack1, ipipTunnel("10.244.0.65")),
		node("h3", "10.102.1.11/24", rack2, ipipTunnel("10.244.0.129")),
	}

	return []state{
		{"mesh", routing.Input{Node: "h1", NodeIP: netip.MustParsePrefix("10.101.1.11/24"), Nodes: threeNodes,
			Pools: plainPool, Blocks: threeBlocks, Borrowed: borrowed("h1", "10.244.0.70", "h3", "10.244.0.5")}},
		{"mesh-custom-as-port", routing.Input{Node: "h2", Nodes: threeNodes, Pools: plainPool, Blocks: threeBlocks,
			BGPConfig: api.BGPConfigurationSpec{ASNumber: asnp(64600), ListenPort: 1179, BindMode: "NodeIP",
				NodeMeshPassword: &api.BGPPassword{Value: "mesh"}, NodeMeshMaxRestartTime: &api.Duration{Duration: time.Minute}}}},
		{"rr-client", routing.Input{Node: "h1", Nodes: rrNodes, Pools: plainPool, BGPConfig: meshOff, Peers: rrPeers,
			Blocks: blocks("h1", "10.244.0.0/26", "h2", "10.244.0.64/26")}},
		{"rr-reflector", routing.Input{Node: "rr1", Nodes: rrNodes, Pools: plainPool, BGPConfig: meshOff, Peers: rrPeers,
			Blocks: blocks("h1", "10.244.0.0/26", "h2", "10.244.0.64/26")}},
		{"rr-with-mesh", routing.Input{Node: "h2", Nodes: rrNodes, Pools: plainPool, Peers: rrPeers}},
		{"tor-rack1", routing.Input{Node: "h1", Nodes: torNodes, Pools: plainPool, BGPConfig: meshOff, Peers: torPeers,
			Blocks: blocks("h1", "10.244.0.0/26", "h3", "10.244.0.64/26")}},
		{"tor-rack2", routing.Input{Node: "h3", Nodes: torNodes, Pools: plainPool, BGPConfig: meshOff, Peers: torPeers,
			Blocks: blocks("h1", "10.244.0.0/26", "h3", "10.244.0.64/26")}},
		{"vxlan-always", routing.Input{Node: "h1", Nodes: vxNodes, Blocks: vxBlocks,
			Pools:    []*api.IPPool{pool("vx", "10.244.0.0/16", "Never", "Always")},
			Borrowed: borrowed("h3", "10.244.0.9", "h2", "10.244.0.200")}},
		{"vxlan-crosssubnet", routing.Input{Node: "h1", Nodes: vxNodes, Blocks: vxBlocks,
			Pools: []*api.IPPool{pool("vx", "10.244.0.0/16", "Never", "CrossSubnet")}}},
		{"vxlan-no-bgp", routing.Input{Node: "h3", Nodes: vxNodes, Blocks: vxBlocks, DisableBGP: true,
			Pools: []*api.IPPool{pool("vx", "10.244.0.0/16", "Never", "Always")},
			Felix: api.FelixConfigurationSpec{VXLANVNI: 4097, VXLANPort: 8472, VXLANMTU: 1400}}},
		{"vxlan-needs-tunnel", routing.Input{Node: "h4", Nodes: vxNodes, Blocks: vxBlocks,
			Pools: []*api.IPPool{pool("vx", "10.244.0.0/16", "Never", "Always"), pool("no-tunnels", "10.245.0.0/16", "Never", "Always", func(p *api.IPPool) {
				p.Spec.AllowedUses = []string{api.AllowedUseWorkload}
			})}}},
		{"ipip-crosssubnet", routing.Input{Node: "h1", Nodes: ipNodes, Blocks: vxBlocks[:3],
			Pools: []*api.IPPool{pool("ip", "10.244.0.0/16", "CrossSubnet", "Never")}}},
		{"pool-options", routing.Input{Node: "h1", Nodes: threeNodes, Blocks: blocks("h1", "10.244.0.0/26", "h1", "10.250.0.0/26", "h1", "10.251.0.0/26", "h1", "10.252.0.0/32"),
			Pools: []*api.IPPool{
				pool("default", "10.244.0.0/16", "", ""),
				pool("disabled", "10.250.0.0/16", "", "", func(p *api.IPPool) { p.Spec.Disabled = true }),
				pool("private", "10.251.0.0/16", "", "", func(p *api.IPPool) { p.Spec.DisableBGPExport = true }),
				pool("tiny", "10.252.0.0/16", "", "", func(p *api.IPPool) { p.Spec.BlockSize = 32 }),
				pool("broken", "not-a-cidr", "", ""),
				pool("rack2-only", "10.253.0.0/16", "Always", "", func(p *api.IPPool) { p.Spec.NodeSelector = "rack == 'r2'" }),
			}}},
		{"dual-stack", routing.Input{Node: "h1",
			Nodes: []*api.Node{
				node("h1", "10.101.1.11/24", rack1, ipv6("fd00:101::11/64")),
				node("h2", "10.101.1.12/24", rack1, ipv6("fd00:101::12/64")),
				node("h3", "10.101.1.13/24", rack1),
			},
			Pools:  []*api.IPPool{pool("v4", "10.244.0.0/16", "", ""), pool("v6", "fd00:244::/48", "", "")},
			Blocks: blocks("h1", "10.244.0.0/26", "h1", "fd00:244::/122", "h2", "fd00:244::40/122"),
			Peers:  []*api.BGPPeer{peer("v6-router", api.BGPPeerSpec{PeerIP: "[fd00:101::1]:179", ASNumber: 65000})}}},
		// IPv6 over vxlan.tabby (IPv4 underlay): across racks via the
		// peer's link-local address, in the rack via its IPv6 address; h4
		// has no MAC yet.
		{"vxlan-dual-crosssubnet", routing.Input{Node: "h1", Nodes: vx6Nodes, Blocks: vx6Blocks,
			Pools: []*api.IPPool{pool("v4", "10.244.0.0/16", "Never", "CrossSubnet"), pool("v6", "fd00:244::/48", "Never", "CrossSubnet")}}},
		// Only the IPv6 pool uses VXLAN: the device has no IPv4 address,
		// the peers only IPv6 neighbors, the IPv4 pool is routed over BGP.
		{"vxlan-ipv6-only", routing.Input{Node: "h1", Nodes: vx6MACOnly, Blocks: vx6Blocks,
			Pools: []*api.IPPool{pool("v4", "10.244.0.0/16", "Never", "Never"), pool("v6", "fd00:244::/48", "Never", "Always")}}},
		{"bfd", routing.Input{Node: "h1", Nodes: threeNodes, Pools: plainPool, Blocks: threeBlocks,
			BGPConfig: api.BGPConfigurationSpec{NodeMeshBFD: &api.BFD{Enabled: true, MinRxMs: int64p(100), MinTxMs: int64p(100)}},
			Peers: []*api.BGPPeer{
				peer("tor", api.BGPPeerSpec{PeerIP: "10.101.1.1", ASNumber: 65000, BFD: &api.BFD{Enabled: true, Multiplier: int64p(5)}}),
				peer("bfd-off", api.BGPPeerSpec{PeerIP: "10.101.1.2", ASNumber: 65000, BFD: &api.BFD{Enabled: false, Multiplier: int64p(5)}}),
			}}},
		{"no-node-address", routing.Input{Node: "h9", Nodes: threeNodes, Pools: plainPool, Blocks: blocks("h9", "10.244.9.0/26")}},
		{"conflicts", routing.Input{Node: "h1", Nodes: threeNodes, Pools: plainPool,
			Blocks: blocks("h1", "10.244.0.0/26", "h2", "10.244.0.0/26"),
			Peers: []*api.BGPPeer{
				peer("bad-selector", api.BGPPeerSpec{NodeSelector: "rack ==", PeerIP: "10.9.9.9", ASNumber: 1}),
				peer("dup-of-mesh", api.BGPPeerSpec{PeerIP: "10.101.1.12", ASNumber: 64512, KeepOriginalNextHop: true}),
				peer("self", api.BGPPeerSpec{PeerIP: "10.101.1.11", ASNumber: 64512}),
				peer("v6-without-v6", api.BGPPeerSpec{PeerIP: "fd00::1", ASNumber: 65000}),
			}}},
	}
}

func int64p(v int64) *int64 { return &v }
