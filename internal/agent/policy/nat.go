package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// natChains builds port mappings (DNAT from a host port to a local
// workload, for traffic arriving from elsewhere and from the host itself)
// and natOutgoing (masquerade of pool traffic leaving all pools).
func (c *compiler) natChains() error {
	hostPorts := &Map{Name: MapHostPorts, Type: MapProtoPort, Comment: "host port to the chain that DNATs it to a workload"}
	c.maps[hostPorts.Name] = hostPorts
	owner := map[Element]string{}
	for _, e := range c.local {
		var rules []Rule
		var keys []Element
		for i, p := range e.Ports {
			if p.HostPort == 0 {
				continue
			}
			id := fmt.Sprintf("WorkloadEndpoint %s/%s: spec.ports[%d]", e.Namespace, e.Name, i)
			// A mapping that cannot be programmed is left out (the
			// host port stays closed) with a warning.
			proto, err := protoNumber(fmt.Sprintf("spec.ports[%d].protocol", i), p.Protocol, 6)
			if err != nil {
				c.warnf("WorkloadEndpoint %s/%s: %v; the port mapping is ignored", e.Namespace, e.Name, err)
				continue
			}
			if proto != 6 && proto != 17 && proto != 132 {
				c.warnf("%s.protocol: %s cannot be port-mapped (TCP, UDP or SCTP); ignored", id, p.Protocol)
				continue
			}
			if p.Port == 0 {
				c.warnf("%s.port: a port mapping needs a container port; ignored", id)
				continue
			}
			var hostIP netip.Addr
			if p.HostIP != "" {
				a, err := netip.ParseAddr(p.HostIP)
				if err != nil {
					c.warnf("%s.hostIP: %q is not an IP address; the port mapping is ignored", id, p.HostIP)
					continue
				}
				hostIP = a.Unmap()
				if len(c.state.NodeIPs) > 0 && !slices.Contains(c.state.NodeIPs, hostIP) {
					c.warnf("%s.hostIP: %s is not an address of node %s", id, hostIP, c.state.Node)
				}
			}
			key := Element{Proto: proto, Port: p.HostPort}
			if other, ok := owner[key]; ok && other != e.IfName {
				c.warnf("%s: host port %s/%d is already mapped to the workload on %s; ignored", id, protoName(proto), p.HostPort, other)
				continue
			}
			owner[key] = e.IfName
			if !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
			mapped := false
			for _, a := range e.Addrs {
				addr := a.Addr()
				if hostIP.IsValid() && hostIP.Is4() != addr.Is4() {
					continue
				}
				fam := addrFamily(addr)
				ms := []Match{NFProto{Family: fam}}
				if hostIP.IsValid() {
					ms = append(ms, AddrPrefix{Dir: Dst, Prefix: netip.PrefixFrom(hostIP, hostIP.BitLen())})
				}
				ms = append(ms, L4Proto{Proto: proto}, Port{Dir: Dst, Min: p.HostPort, Max: p.HostPort})
				rules = append(rules, Rule{Matches: ms, Stmts: []Stmt{DNAT{Addr: addr, Port: p.Port}}})
				mapped = true
			}
			if !mapped {
				c.warnf("%s: the workload has no address of the family of hostIP %s", id, hostIP)
			}
		}
		if len(rules) == 0 {
			continue
		}
		name := "pm-" + e.IfName
		c.addChain(&Chain{Name: name, Rules: rules})
		for _, k := range keys {
			hostPorts.Elements = append(hostPorts.Elements, MapElement{Key: k, Verdict: Verdict{Kind: Goto, Chain: name}})
		}
	}
	slices.SortFunc(hostPorts.Elements, func(a, b MapElement) int { return a.Key.Compare(b.Key) })

	dispatch := Verdict{Kind: VMap, Map: MapHostPorts, Key: KeyProtoDport}
	c.addChain(&Chain{Name: "nat-prerouting", Hook: hook(TypeNAT, HookPrerouting, PriorityDstNAT), Rules: []Rule{
		{Matches: []Match{FibDaddrLocal{}}, Verdict: dispatch},
	}})
	// From the host itself, like mesos-cni-port-mapper: local destinations
	// except loopback (DNAT of 127.0.0.1 would need route_localnet).
	c.addChain(&Chain{Name: "nat-output", Hook: hook(TypeNAT, HookOutput, PriorityDstNAT), Rules: []Rule{
		{Matches: []Match{NFProto{Family: 4}, AddrPrefix{Dir: Dst, Prefix: netip.MustParsePrefix("127.0.0.0/8"), Neg: true}, FibDaddrLocal{}}, Verdict: dispatch},
		{Matches: []Match{NFProto{Family: 6}, AddrPrefix{Dir: Dst, Prefix: netip.MustParsePrefix("::1/128"), Neg: true}, FibDaddrLocal{}}, Verdict: dispatch},
	}})

	// natOutgoing.
	var all4, all6, nat4, nat6 []netip.Prefix
	for i, p := range c.state.Pools {
		if p == nil {
			return fmt.Errorf("pools[%d] is nil", i)
		}
		n, err := netip.ParsePrefix(strings.TrimSpace(p.Spec.CIDR))
		if err != nil {
			c.warnf("IPPool %s: spec.cidr: %q is not a CIDR; the pool is ignored", p.Name, p.Spec.CIDR)
			continue
		}
		n = n.Masked()
		if n.Addr().Is4() {
			all4 = append(all4, n)
			if p.Spec.NATOutgoing {
				nat4 = append(nat4, n)
			}
		} else {
			all6 = append(all6, n)
			if p.Spec.NATOutgoing {
				nat6 = append(nat6, n)
			}
		}
	}
	c.addSet(SetPools4, SetAddr4, "all IP pools", func() []Element { return prefixElements(all4) })
	c.addSet(SetPools6, SetAddr6, "all IP pools", func() []Element { return prefixElements(all6) })
	c.addSet(SetNATPools4, SetAddr4, "IP pools with natOutgoing", func() []Element { return prefixElements(nat4) })
	c.addSet(SetNATPools6, SetAddr6, "IP pools with natOutgoing", func() []Element { return prefixElements(nat6) })

	snat := map[int]Stmt{4: Masquerade{}, 6: Masquerade{}}
	if s := c.state.Felix.NATOutgoingAddress; s != "" {
		if a, err := netip.ParseAddr(s); err != nil {
			c.warnf("FelixConfiguration spec.natOutgoingAddress: %q is not an IP address; masquerading instead", s)
		} else {
			a = a.Unmap()
			snat[addrFamily(a)] = SNAT{Addr: a}
		}
	}
	var post []Rule
	for _, f := range []struct {
		fam       int
		nat, pool string
	}{{4, SetNATPools4, SetPools4}, {6, SetNATPools6, SetPools6}} {
		post = append(post, Rule{Matches: []Match{
			NFProto{Family: f.fam},
			AddrSet{Family: f.fam, Dir: Src, Set: f.nat},
			AddrSet{Family: f.fam, Dir: Dst, Set: f.pool, Neg: true},
		}, Stmts: []Stmt{snat[f.fam]}})
	}
	c.addChain(&Chain{Name: "nat-postrouting", Hook: hook(TypeNAT, HookPostrouting, PrioritySrcNAT), Rules: post})
	return nil
}
