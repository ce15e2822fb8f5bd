package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Names of the sets and maps every ruleset has.
const (
	SetWorkloadSrc4 = "wl-src4"    // (interface, address) of local workloads: anti-spoofing
	SetWorkloadSrc6 = "wl-src6"    //
	SetPools4       = "pools4"     // every IP pool
	SetPools6       = "pools6"     //
	SetNATPools4    = "nat-pools4" // pools with natOutgoing
	SetNATPools6    = "nat-pools6" //
	MapFromWorkload = "from-wl"    // workload interface → its egress chain
	MapToWorkload   = "to-wl"      // workload interface → its ingress chain
	MapFromHost     = "from-hep"   // host endpoint interface → its ingress chain
	MapToHost       = "to-hep"     // host endpoint interface → its egress chain
	MapHostPorts    = "host-ports" // (protocol, host port) → the chain DNATing it
)

// shortHash names a set after its content key.
func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}

// addSet registers a set (once per name) and returns its name.
func (c *compiler) addSet(name string, t SetType, comment string, elems func() []Element) string {
	if _, ok := c.sets[name]; ok {
		return name
	}
	c.sets[name] = &Set{Name: name, Type: t, Comment: truncateComment(comment), Elements: elems()}
	return name
}

func addrSetType(family int) SetType {
	if family == 4 {
		return SetAddr4
	}
	return SetAddr6
}

// selectorSet returns the set of addresses (of one family) of the entities
// the predicate matches. Membership is computed once per predicate.
func (c *compiler) selectorSet(p *predicate, family int) string {
	name := "s4-" + p.hash
	if family == 6 {
		name = "s6-" + p.hash
	}
	c.sources[name] = setSource{pred: p, family: family}
	return c.addSet(name, addrSetType(family), p.describe(), func() []Element {
		var nets []netip.Prefix
		for _, e := range c.members(p) {
			for _, n := range e.nets {
				if n.Addr().Is4() == (family == 4) {
					nets = append(nets, n)
				}
			}
		}
		return prefixElements(nets)
	})
}

// setSource says what a selector or named-port set holds: the addresses
// (or, named, the (address, protocol, port) of the port called port) of
// one family of every entity pred matches.
type setSource struct {
	pred   *predicate
	family int
	port   string
	named  bool
}

// contribution is what one entity puts into a set of this source: sorted,
// possibly repeated elements (an interval set drops the prefixes others
// contain when its elements are built).
func (src setSource) contribution(e *entity) []Element {
	if !src.pred.matches(e) {
		return nil
	}
	var out []Element
	for _, n := range e.nets {
		if n.Addr().Is4() != (src.family == 4) {
			continue
		}
		if !src.named {
			out = append(out, Element{Prefix: n.Masked()})
			continue
		}
		if !n.IsSingleIP() {
			continue
		}
		for _, np := range e.ports {
			if np.name == src.port {
				out = append(out, Element{Addr: n.Addr(), Proto: np.proto, Port: np.port})
			}
		}
	}
	return out
}

// members lists the entities a predicate matches (cached by key).
func (c *compiler) members(p *predicate) []*entity {
	if m, ok := c.memberCache[p.key]; ok {
		return m
	}
	candidates := c.entities
	if k, v, ok := p.sel.RequiredEqual(); ok {
		candidates = c.labelled(k)[v]
	}
	var m []*entity
	for _, e := range candidates {
		if p.matches(e) {
			m = append(m, e)
		}
	}
	c.memberCache[p.key] = m
	return m
}

// labelled is the label index of one key: value → the entities whose
// labels give the key that value, in the compiler's entity order. Built
// on first use in a compile, it turns the membership of a selector that
// requires `key == value` (most selectors of real policies) from a scan of
// every entity of the cluster into a scan of the entities with that
// label.
func (c *compiler) labelled(key string) map[string][]*entity {
	if idx, ok := c.labelIndex[key]; ok {
		return idx
	}
	idx := map[string][]*entity{}
	for _, e := range c.entities {
		if v, ok := e.labels[key]; ok {
			idx[v] = append(idx[v], e)
		}
	}
	if c.labelIndex == nil {
		c.labelIndex = map[string]map[string][]*entity{}
	}
	c.labelIndex[key] = idx
	return idx
}

// netsSet returns the set holding a literal list of prefixes of one family
// (elements as prefixElements returns them).
func (c *compiler) netsSet(elems []Element, family int) string {
	var key strings.Builder
	for _, e := range elems {
		key.WriteString(e.Prefix.String())
		key.WriteByte(',')
	}
	name := fmt.Sprintf("n%d-%s", family, shortHash(key.String()))
	comment := key.String()
	comment = "nets " + strings.TrimSuffix(comment, ",")
	return c.addSet(name, addrSetType(family), comment, func() []Element { return elems })
}

// portSet returns the set holding a list of port ranges.
func (c *compiler) portSet(ranges []Element) string {
	var key strings.Builder
	for i, e := range ranges {
		if i > 0 {
			key.WriteByte(',')
		}
		key.WriteString(renderPortRange(e.Port, e.PortEnd))
	}
	name := "p-" + shortHash(key.String())
	return c.addSet(name, SetPort, "ports "+key.String(), func() []Element { return ranges })
}

// namedPortSet returns the set of (address, protocol, port) of every entity
// matched by p that has a port called portName.
func (c *compiler) namedPortSet(p *predicate, portName string, family int) string {
	t := SetAddrPort4
	if family == 6 {
		t = SetAddrPort6
	}
	name := fmt.Sprintf("np%d-%s", family, shortHash(p.key+"|port="+portName))
	c.sources[name] = setSource{pred: p, family: family, port: portName, named: true}
	return c.addSet(name, t, "port "+portName+" of "+p.describe(), func() []Element {
		var elems []Element
		for _, e := range c.members(p) {
			for _, np := range e.ports {
				if np.name != portName {
					continue
				}
				for _, n := range e.nets {
					if n.IsSingleIP() && n.Addr().Is4() == (family == 4) {
						elems = append(elems, Element{Addr: n.Addr(), Proto: np.proto, Port: np.port})
					}
				}
			}
		}
		slices.SortFunc(elems, Element.Compare)
		return slices.Compact(elems)
	})
}

// prefixElements sorts prefixes and drops those another one contains, so
// the interval set never holds overlapping ranges (prefixes either nest or
// are disjoint, so that is enough).
func prefixElements(nets []netip.Prefix) []Element {
	ps := slices.Clone(nets)
	for i := range ps {
		ps[i] = ps[i].Masked()
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := make([]Element, 0, len(ps))
	var last netip.Prefix
	for _, p := range ps {
		if last.IsValid() && last.Bits() <= p.Bits() && last.Contains(p.Addr()) {
			continue
		}
		out = append(out, Element{Prefix: p})
		last = p
	}
	return out
}

// portRanges sorts and merges port ranges.
func portRanges(in []Element) []Element {
	rs := slices.Clone(in)
	slices.SortFunc(rs, func(a, b Element) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.PortEnd) - int(b.PortEnd)
	})
	var out []Element
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.Port) <= uint32(out[n-1].PortEnd)+1 {
			out[n-1].PortEnd = max(out[n-1].PortEnd, r.PortEnd)
			continue
		}
		out = append(out, r)
	}
	return out
}

// chainName builds a chain name from a prefix and an object name, keeping
// it well under the kernel's 256-byte limit.
func chainName(prefix, id string) string {
	const maxLen = 200
	n := prefix + id
	if len(n) <= maxLen {
		return n
	}
	return n[:maxLen-13] + "-" + shortHash(n)
}
