package routing_test

import (
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/api"
)

// FuzzDesired feeds Desired resources whose strings (addresses, CIDRs,
// modes, selectors, cluster IDs, MACs, peer addresses) are arbitrary, as a
// datastore written by other tools might hold: Desired must never panic,
// must be deterministic, and every route it returns must be well formed.
func FuzzDesired(f *testing.F) {
	f.Add("10.101.1.11/24", "10.244.0.0/16", "CrossSubnet", "Always", "all()", "224.0.0.1", "10.244.0.1", "66:0a:f4:00:01:01", "10.101.1.1:1179", "rack == 'r1'", "10.244.0.0/26")
	f.Add("", "", "", "", "", "", "", "", "", "", "")
	f.Add("fd00::1/64", "fd00:244::/48", "Always", "Never", "has(x", "fd00::1", "zz", "not-a-mac", "[fd00::2]:179", "!", "fd00:244::/122")
	f.Add("10.0.0.1", "10.0.0.0/8", "always", "crosssubnet", "a == 'b' || c", "1.2.3.4", "10.0.0.1", "", "10.0.0.1", "", "10.0.0.0/32")
	f.Fuzz(func(t *testing.T, nodeIP, poolCIDR, ipip, vxlan, poolSel, clusterID, tunAddr, mac, peerIP, nodeSel, blockCIDR string) {
		asn := api.ASNumber(65001)
		nodes := []*api.Node{
			{ObjectMeta: api.ObjectMeta{Name: "h1", Labels: map[string]string{"rack": "r1"}},
				Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: nodeIP, IPv6Address: nodeIP, RouteReflectorClusterID: clusterID, IPv4IPIPTunnelAddr: tunAddr},
					IPv4VXLANTunnelAddr: tunAddr, VXLANTunnelMACAddr: mac}},
			{ObjectMeta: api.ObjectMeta{Name: "h2"},
				Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: peerIP, ASNumber: &asn, RouteReflectorClusterID: clusterID},
					IPv4VXLANTunnelAddr: tunAddr, VXLANTunnelMACAddr: mac}},
		}
		pools := []*api.IPPool{{ObjectMeta: api.ObjectMeta{Name: "p"}, Spec: api.IPPoolSpec{CIDR: poolCIDR, IPIPMode: ipip, VXLANMode: vxlan, NodeSelector: poolSel}}}
		peers := []*api.BGPPeer{
			{ObjectMeta: api.ObjectMeta{Name: "a"}, Spec: api.BGPPeerSpec{PeerIP: peerIP, ASNumber: 65000, NodeSelector: nodeSel}},
			{ObjectMeta: api.ObjectMeta{Name: "b"}, Spec: api.BGPPeerSpec{PeerSelector: nodeSel, NodeSelector: poolSel}},
		}
		var blocks []routing.BlockAffinity
		if b, err := netip.ParsePrefix(blockCIDR); err == nil {
			blocks = append(blocks, routing.BlockAffinity{Node: "h1", CIDR: b}, routing.BlockAffinity{Node: "h2", CIDR: b.Masked()})
		}
		var borrowed []routing.BorrowedAddr
		if a, err := netip.ParseAddr(tunAddr); err == nil {
			borrowed = append(borrowed, routing.BorrowedAddr{Node: "h2", Addr: a})
		}
		var np netip.Prefix
		if p, err := netip.ParsePrefix(nodeIP); err == nil {
			np = p
		}
		in := &routing.Input{Node: "h1", NodeIP: np, Nodes: nodes, Pools: pools, Peers: peers, Blocks: blocks, Borrowed: borrowed}
		p := routing.Desired(in)
		first := p.Render()
		if again := routing.Desired(in).Render(); again != first {
			t.Fatalf("Desired is not deterministic:\n%s\n---\n%s", first, again)
		}
		for _, r := range p.Routes {
			if !r.Dst.IsValid() || (r.Type == routing.RouteUnicast && !r.Gateway.IsValid()) {
				t.Fatalf("malformed route %+v in\n%s", r, first)
			}
		}
		if pth, err := netip.ParsePrefix(blockCIDR); err == nil {
			if a, err := netip.ParseAddr(tunAddr); err == nil {
				_, _ = p.LearnedRoute(routing.LearnedPath{Prefix: pth, NextHop: a})
			}
		}
	})
}
