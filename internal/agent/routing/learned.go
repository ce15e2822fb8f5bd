package routing

import (
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/api"
)

// LearnedPath is a best path the BGP speaker learned from a peer.
type LearnedPath struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
}

// LearnedRoute turns a learned path into a kernel route, or reports false
// when the host must not install it:
//
//   - prefixes outside every IP pool (Tabby routes container addresses
//     only; the host's own routing is not its business);
//   - the host's own blocks and borrowed addresses (it originates them);
//   - prefixes in VXLAN pools (routed from the datastore, as Calico does);
//   - paths whose next hop is the host itself or missing.
//
// In an IP-in-IP pool the route goes through the tunnel device (Always, or
// CrossSubnet when the destination host is in another subnet); the tunnel
// endpoint is the owning node's address when the datastore knows it, else
// the BGP next hop.
func (p *Plan) LearnedRoute(lp LearnedPath) (Route, bool) {
	dst, nh := lp.Prefix.Masked(), lp.NextHop.Unmap()
	if !dst.IsValid() || !nh.IsValid() || nh.IsUnspecified() || nh.Is4() != dst.Addr().Is4() {
		return Route{}, false
	}
	if (p.NodeIP.IsValid() && nh == p.NodeIP.Addr()) || (p.NodeIPv6.IsValid() && nh == p.NodeIPv6.Addr()) {
		return Route{}, false
	}
	if p.own[dst] {
		return Route{}, false
	}
	pl := p.poolOf(dst)
	if pl == nil || pl.vxlan != api.EncapNever {
		return Route{}, false
	}
	if pl.ipip != api.EncapNever && dst.Addr().Is4() && p.learnDev {
		endpoint := nh
		if n := p.nodes[p.owner[dst]]; n != nil && n.ip4.IsValid() {
			endpoint = n.ip4.Addr()
		}
		if pl.ipip == api.EncapAlways || !p.sameSubnet(endpoint) {
			return Route{Dst: dst, Gateway: endpoint, Dev: IPIPDeviceName, OnLink: true}, true
		}
	}
	return Route{Dst: dst, Gateway: nh}, true
}

// Kernel is the kernel state for this plan with the learned paths added.
// Datastore-derived routes win over learned ones for the same prefix; of
// several learned paths for one prefix the first is kept.
func (p *Plan) Kernel(learned []LearnedPath) *KernelState {
	ks := &KernelState{VXLAN: p.VXLAN, IPIP: p.IPIP, VXLANPeers: slices.Clone(p.VXLANPeers)}
	have := map[netip.Prefix]bool{}
	for _, r := range p.Routes {
		have[r.Dst] = true
		ks.Routes = append(ks.Routes, r)
	}
	for _, lp := range learned {
		r, ok := p.LearnedRoute(lp)
		if !ok || have[r.Dst] {
			continue
		}
		have[r.Dst] = true
		ks.Routes = append(ks.Routes, r)
	}
	slices.SortFunc(ks.Routes, CompareRoutes)
	return ks
}
