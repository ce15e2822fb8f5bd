package routing

import (
	"fmt"
	"net/netip"
	"strings"
)

// Render prints the plan as deterministic text (the golden files). Secrets
// are never printed: a password shows as where it comes from.
func (p *Plan) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s ipv4 %s", p.Node, prefixOrNone(p.NodeIP))
	if p.NodeIPv6.IsValid() {
		fmt.Fprintf(&b, " ipv6 %s", p.NodeIPv6)
	}
	b.WriteString("\n")
	if p.BGP == nil {
		b.WriteString("bgp: off\n")
	} else {
		g := p.BGP
		listen := "*"
		if g.ListenAddr.IsValid() {
			listen = g.ListenAddr.String()
		}
		fmt.Fprintf(&b, "bgp: router-id %s as %s listen %s port %d", g.RouterID, g.ASN, listen, g.ListenPort)
		if g.ClusterID != "" {
			fmt.Fprintf(&b, " route-reflector cluster-id %s", g.ClusterID)
		}
		b.WriteString("\n")
		for _, pr := range g.Peers {
			b.WriteString("  peer " + pr.render() + "\n")
		}
	}
	b.WriteString("adverts:\n")
	for _, a := range p.Adverts {
		b.WriteString("  " + a.String() + "\n")
	}
	b.WriteString("tunnels:\n")
	for _, t := range []struct {
		kind string
		need TunnelNeed
	}{{"vxlan", p.VXLANTunnel}, {"ipip", p.IPIPTunnel}} {
		if t.need.Want {
			fmt.Fprintf(&b, "  %s address from %s\n", t.kind, strings.Join(t.need.Pools, ","))
		}
	}
	b.WriteString(p.Kernel(nil).Render())
	if len(p.Problems) > 0 {
		b.WriteString("problems:\n")
		for _, s := range p.Problems {
			b.WriteString("  " + s + "\n")
		}
	}
	return b.String()
}

func (pr Peer) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", pr.Address)
	if pr.Port != 0 {
		fmt.Fprintf(&b, " port %d", pr.Port)
	}
	fmt.Fprintf(&b, " as %s type %q", pr.ASN, string(pr.Type))
	if pr.Node != "" {
		b.WriteString(" node " + pr.Node)
	}
	if pr.Source != "" {
		b.WriteString(" from " + pr.Source)
	}
	if pr.LocalAddress.IsValid() {
		b.WriteString(" local " + pr.LocalAddress.String())
	}
	if pr.RouteReflectorClient {
		b.WriteString(" rr-client")
	}
	if pr.Passive {
		b.WriteString(" passive")
	}
	if pr.KeepOriginalNextHop {
		b.WriteString(" keep-next-hop")
	}
	if pr.Password != nil {
		switch {
		case pr.Password.File != "":
			b.WriteString(" password-file " + pr.Password.File)
		case pr.Password.SecretKeyRef != nil:
			b.WriteString(" password-secret " + pr.Password.SecretKeyRef.Name)
		default:
			b.WriteString(" password set")
		}
	}
	if pr.MaxRestartTime != 0 {
		b.WriteString(" restart-time " + pr.MaxRestartTime.String())
	}
	if pr.KeepaliveTime != 0 {
		b.WriteString(" keepalive " + pr.KeepaliveTime.String())
	}
	if pr.TTLSecurity != 0 {
		fmt.Fprintf(&b, " ttl-security %d", pr.TTLSecurity)
	}
	if pr.AllowOwnAS != 0 {
		fmt.Fprintf(&b, " allow-own-as %d", pr.AllowOwnAS)
	}
	if pr.BFD.Enabled {
		fmt.Fprintf(&b, " bfd rx %s tx %s x%d", pr.BFD.MinRx, pr.BFD.MinTx, pr.BFD.Multiplier)
	}
	return b.String()
}

// Render prints the kernel state as deterministic text.
func (k *KernelState) Render() string {
	var b strings.Builder
	if v := k.VXLAN; v != nil {
		fmt.Fprintf(&b, "device %s vxlan id %d port %d local %s addr %s mac %s", v.Name, v.VNI, v.Port, v.LocalIP, addrOrNone(v.Addr), v.MAC)
		if v.MTU != 0 {
			fmt.Fprintf(&b, " mtu %d", v.MTU)
		}
		b.WriteString("\n")
		for _, n := range k.VXLANPeers {
			fmt.Fprintf(&b, "  fdb %s dst %s", n.MAC, n.NodeIP)
			for _, a := range []netip.Addr{n.TunnelAddr, n.TunnelAddr6} {
				if a.IsValid() {
					fmt.Fprintf(&b, "; neigh %s lladdr %s", a, n.MAC)
				}
			}
			fmt.Fprintf(&b, " (node %s)\n", n.Node)
		}
	}
	if t := k.IPIP; t != nil {
		fmt.Fprintf(&b, "device %s ipip addr %s", t.Name, t.Addr)
		if t.MTU != 0 {
			fmt.Fprintf(&b, " mtu %d", t.MTU)
		}
		b.WriteString("\n")
	}
	b.WriteString("routes:\n")
	for _, r := range k.Routes {
		b.WriteString("  " + r.String() + "\n")
	}
	return b.String()
}

func prefixOrNone(p netip.Prefix) string {
	if !p.IsValid() {
		return "none"
	}
	return p.String()
}

func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}
