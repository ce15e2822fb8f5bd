package routing

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
)

// planBGP computes the speaker's sessions, following Calico:
//
//   - Node-to-node mesh (nodeToNodeMeshEnabled, default true): every node
//     with an address peers with every other, except route reflectors
//     (nodes with spec.bgp.routeReflectorClusterID), which leave the mesh.
//   - A BGPPeer applies to the nodes it names (node), selects (nodeSelector)
//     or, with neither, to every node ("global"). Its target is peerIP with
//     asNumber, or every node its peerSelector selects; a peerSelector
//     peering is made in both directions, so the selected nodes peer back.
//   - A route reflector treats a peer node without a cluster ID in the
//     same AS as its client.
//   - A session to the same address from several sources is made once:
//     BGPPeers (by name) win over the mesh.
func planBGP(in *Input, p *Plan, self *nodeInfo) *BGPPlan {
	cfg := &in.BGPConfig
	asn := cfg.ASN()
	if self.asn != 0 {
		asn = self.asn
	}
	b := &BGPPlan{RouterID: self.ip4.Addr(), ASN: asn, ListenPort: cfg.Port(), ClusterID: self.clusterID}
	if cfg.BindMode == "NodeIP" {
		b.ListenAddr = self.ip4.Addr()
	}
	if self.clusterID != "" {
		if a, err := netip.ParseAddr(self.clusterID); err != nil || !a.Is4() {
			p.problem("node %s: routeReflectorClusterID %q is not an IPv4 address; not acting as route reflector", self.name, self.clusterID)
			b.ClusterID = ""
		}
	}
	seen := map[netip.Addr]bool{}
	add := func(pr Peer) {
		if !pr.Address.IsValid() || seen[pr.Address] {
			return
		}
		if pr.Address == self.ip4.Addr() || (self.ip6.IsValid() && pr.Address == self.ip6.Addr()) {
			return
		}
		if pr.Address.Is6() && !self.ip6.IsValid() {
			p.problem("peer %s (%s) is IPv6 but node %s has no IPv6 address; not peering", pr.Address, pr.Type, self.name)
			return
		}
		seen[pr.Address] = true
		b.Peers = append(b.Peers, pr)
	}
	nodeASN := func(n *nodeInfo) api.ASNumber {
		if n.asn != 0 {
			return n.asn
		}
		return cfg.ASN()
	}
	// nodePeers adds the sessions (IPv4, and IPv6 when both ends have it)
	// to another node.
	nodePeers := func(n *nodeInfo, typ PeerType, source string, bp *api.BGPPeerSpec) {
		if n.name == self.name {
			return
		}
		if n.clusterID != "" && typ != PeerMesh {
			typ = PeerRouteReflector
		}
		base := Peer{Port: cfg.Port(), ASN: nodeASN(n), Type: typ, Node: n.name, Source: source}
		if b.ClusterID != "" && n.clusterID == "" && base.ASN == asn {
			base.RouteReflectorClient = true
		}
		if bp != nil {
			applyPeerSpec(&base, bp)
		} else {
			base.Password = cfg.NodeMeshPassword
			base.BFD = bfdOf(cfg.NodeMeshBFD)
			if cfg.NodeMeshMaxRestartTime != nil {
				base.MaxRestartTime = cfg.NodeMeshMaxRestartTime.Duration
			}
		}
		if n.ip4.IsValid() {
			pr := base
			pr.Address = n.ip4.Addr()
			pr.LocalAddress = localFor(bp, self.ip4)
			pr.Passive = self.ip4.Addr().Less(pr.Address)
			add(pr)
		}
		if n.ip6.IsValid() && self.ip6.IsValid() {
			pr := base
			pr.Address = n.ip6.Addr()
			pr.LocalAddress = localFor(bp, self.ip6)
			pr.Passive = self.ip6.Addr().Less(pr.Address)
			add(pr)
		}
	}

	nodes := p.sortedNodes()
	peers := slices.Clone(in.Peers)
	slices.SortFunc(peers, func(a, b *api.BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	for _, bp := range peers {
		s := &bp.Spec
		applies, err := peerAppliesTo(s, p.nodes[self.name])
		if err != nil {
			p.problem("BGPPeer %s: %v; ignored", bp.Name, err)
			continue
		}
		typ := PeerGlobal
		if s.Node != "" || s.NodeSelector != "" {
			typ = PeerNodeSpecific
		}
		switch {
		case s.PeerIP != "":
			if !applies {
				continue
			}
			addr, port, err := api.ParsePeerIP(s.PeerIP)
			if err != nil {
				p.problem("BGPPeer %s: peerIP: %v; ignored", bp.Name, err)
				continue
			}
			pr := Peer{Address: addr.Unmap(), Port: port, ASN: s.ASNumber, Type: typ, Source: bp.Name}
			if port == 0 {
				pr.Port = api.DefaultBGPPort
			}
			applyPeerSpec(&pr, s)
			local := self.ip4
			if pr.Address.Is6() {
				local = self.ip6
			}
			pr.LocalAddress = localFor(s, local)
			for _, n := range nodes {
				if (n.ip4.IsValid() && n.ip4.Addr() == pr.Address) || (n.ip6.IsValid() && n.ip6.Addr() == pr.Address) {
					pr.Node = n.name
					if n.clusterID != "" {
						pr.Type = PeerRouteReflector
					}
					pr.Passive = pr.LocalAddress.IsValid() && pr.LocalAddress.Less(pr.Address)
				}
			}
			add(pr)
		case s.PeerSelector != "":
			psel, err := selector.Parse(s.PeerSelector)
			if err != nil {
				p.problem("BGPPeer %s: peerSelector %q does not parse; ignored", bp.Name, s.PeerSelector)
				continue
			}
			if applies {
				for _, n := range nodes {
					if psel.Evaluate(n.labels) {
						nodePeers(n, typ, bp.Name, s)
					}
				}
			}
			if psel.Evaluate(self.labels) {
				// The reverse direction: nodes this BGPPeer applies to peer with us.
				for _, n := range nodes {
					if ok, _ := peerAppliesTo(s, n); ok {
						nodePeers(n, typ, bp.Name, s)
					}
				}
			}
		}
	}
	if cfg.MeshEnabled() && self.clusterID == "" {
		for _, n := range nodes {
			if n.clusterID == "" {
				nodePeers(n, PeerMesh, "", nil)
			}
		}
	}
	slices.SortFunc(b.Peers, func(x, y Peer) int {
		return cmp.Or(x.Address.Compare(y.Address), cmp.Compare(x.Port, y.Port))
	})
	return b
}

// peerAppliesTo reports whether a BGPPeer configures sessions on node n.
func peerAppliesTo(s *api.BGPPeerSpec, n *nodeInfo) (bool, error) {
	switch {
	case n == nil:
		return false, nil
	case s.Node != "":
		return s.Node == n.name, nil
	case s.NodeSelector != "":
		sel, err := selector.Parse(s.NodeSelector)
		if err != nil {
			return false, err
		}
		return sel.Evaluate(n.labels), nil
	}
	return true, nil
}

// applyPeerSpec copies a BGPPeer's session options.
func applyPeerSpec(pr *Peer, s *api.BGPPeerSpec) {
	if s == nil {
		return
	}
	pr.Password = s.Password
	pr.KeepOriginalNextHop = s.KeepOriginalNextHop
	if s.MaxRestartTime != nil {
		pr.MaxRestartTime = s.MaxRestartTime.Duration
	}
	if s.KeepaliveTime != nil {
		pr.KeepaliveTime = s.KeepaliveTime.Duration
	}
	if s.TTLSecurity != nil {
		pr.TTLSecurity = *s.TTLSecurity
	}
	if s.NumAllowedLocalASNumbers != nil {
		pr.AllowOwnAS = *s.NumAllowedLocalASNumbers
	}
	pr.BFD = bfdOf(s.BFD)
}

// localFor is the session's source address: the node address, unless the
// BGPPeer says sourceAddress: None.
func localFor(s *api.BGPPeerSpec, node netip.Prefix) netip.Addr {
	if (s != nil && s.SourceAddress == "None") || !node.IsValid() {
		return netip.Addr{}
	}
	return node.Addr()
}
