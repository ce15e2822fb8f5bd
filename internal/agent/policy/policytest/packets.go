package policytest

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// Fixed addresses random packets also use: outside every pool, inside a
// pool but no endpoint's, in the network sets Random writes, link-local.
var (
	packetAddrs4 = []string{"192.0.2.7", "198.51.100.9", "172.16.3.4", "10.65.0.9", "10.1.2.3", "198.18.5.1"}
	packetAddrs6 = []string{"2001:db8::7", "2001:db8:1::9", "fd00:65::99", "fd01::1", "fe80::1"}
	packetPorts  = []uint16{22, 53, 80, 81, 179, 443, 8000, 8050, 8099, 9050, 31000, 31005, 31019, 40000}
)

// Packets returns n random packets that touch the state: from, to and
// between its local endpoints, to the host, from the host, and before
// conntrack (anti-spoofing), with addresses of its endpoints, sets and
// a few others, on the protocols and ports its rules use.
func (g *Random) Packets(s *policy.State, n int) []Packet {
	var local []localIf
	addrs := map[int][]netip.Addr{}
	for _, a := range packetAddrs4 {
		addrs[4] = append(addrs[4], netip.MustParseAddr(a))
	}
	for _, a := range packetAddrs6 {
		addrs[6] = append(addrs[6], netip.MustParseAddr(a))
	}
	ports := slices.Clone(packetPorts)
	for _, e := range s.Endpoints {
		li := localIf{name: e.Spec.InterfaceName}
		for _, n := range e.Spec.IPNetworks {
			p, err := netip.ParsePrefix(n)
			if err != nil {
				continue
			}
			addrs[familyOf(p.Addr())] = append(addrs[familyOf(p.Addr())], p.Addr())
			li.addrs = append(li.addrs, p.Addr())
		}
		for _, pt := range e.Spec.Ports {
			ports = append(ports, pt.Port)
		}
		if e.Spec.Node == s.Node && strings.HasPrefix(li.name, "tby") {
			local = append(local, li)
		}
	}
	for _, h := range s.HostEndpoints {
		for _, ip := range h.Spec.ExpectedIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				addrs[familyOf(a)] = append(addrs[familyOf(a)], a)
			}
		}
	}
	out := make([]Packet, 0, n)
	for len(out) < n {
		out = append(out, g.packet(local, addrs, ports))
	}
	return out
}

type localIf struct {
	name  string
	addrs []netip.Addr
}

func (g *Random) packet(local []localIf, addrs map[int][]netip.Addr, ports []uint16) Packet {
	p := Packet{Family: pick(g.r, 4, 4, 6)}
	addr := func() netip.Addr { return pick(g.r, addrs[p.Family]...) }
	p.Src, p.Dst = addr(), addr()
	var li localIf
	if len(local) > 0 {
		li = pick(g.r, local...)
		// A workload mostly sends from (or receives at) its own address.
		for _, a := range li.addrs {
			if familyOf(a) == p.Family && g.r.IntN(4) != 0 {
				p.Src = a
			}
		}
	}
	other := "eth0"
	if len(local) > 1 && g.r.IntN(2) == 0 {
		other = pick(g.r, local...).name
	}
	switch g.r.IntN(7) {
	case 0, 1: // from a workload
		p.Hook, p.IIf, p.OIf = policy.HookForward, li.name, other
	case 2: // to a workload
		p.Hook, p.IIf, p.OIf = policy.HookForward, other, li.name
		p.Src, p.Dst = p.Dst, p.Src
	case 3: // a workload to its host
		p.Hook, p.IIf, p.DaddrLocal = policy.HookInput, li.name, true
	case 4: // into the host from outside
		p.Hook, p.IIf, p.DaddrLocal = policy.HookInput, pick(g.r, "eth0", "eth1", "lo"), true
	case 5: // from the host
		p.Hook, p.OIf = policy.HookOutput, pick(g.r, "eth0", "eth1", li.name)
	case 6: // before conntrack
		p.Hook, p.IIf = policy.HookPrerouting, li.name
	}
	switch g.r.IntN(8) {
	case 0:
		p.Proto = 1
		if p.Family == 6 {
			p.Proto = 58
		}
		p.ICMPType = pick[uint8](g.r, 0, 3, 8, 128, 129, 133, 135)
		p.ICMPCode = pick[uint8](g.r, 0, 0, 1)
	case 1:
		p.Proto = pick[uint8](g.r, 132, 47)
		if p.Proto == 132 {
			p.SPort, p.DPort = pick(g.r, ports...), pick(g.r, ports...)
		}
	default:
		p.Proto = pick[uint8](g.r, 6, 6, 17)
		p.SPort, p.DPort = pick(g.r, ports...), pick(g.r, ports...)
	}
	switch g.r.IntN(10) {
	case 0:
		p.Ct = policy.CtEstablished
	case 1:
		p.Ct = policy.CtInvalid
	}
	return p
}
