package dns

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
)

// clientFilter says which clients names outside our zones are forwarded
// for. It is immutable; the server swaps in a new one when pools or nodes
// change.
type clientFilter struct {
	any  bool
	nets []netip.Prefix // sorted, masked, no duplicates
}

var loopbackNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// allows reports whether client may have its queries forwarded.
func (f *clientFilter) allows(client netip.Addr) bool {
	if f == nil {
		return false
	}
	if f.any {
		return true
	}
	client = client.Unmap()
	for _, n := range f.nets {
		if n.Contains(client) {
			return true
		}
	}
	return false
}

// newClientFilter is loopback, the configured networks, every pool's CIDR
// (the containers) and every node's BGP address network (the hosts).
// Values that do not parse are skipped: they were validated on write, and
// a bad one must not stop forwarding for the rest.
func newClientFilter(any bool, static []netip.Prefix, pools []*api.IPPool, nodes []*api.Node) *clientFilter {
	f := &clientFilter{any: any}
	add := func(p netip.Prefix, err error) {
		if err == nil && p.IsValid() {
			f.nets = append(f.nets, p.Masked())
		}
	}
	for _, p := range slices.Concat(loopbackNets, static) {
		add(p, nil)
	}
	for _, p := range pools {
		add(netip.ParsePrefix(p.Spec.CIDR))
	}
	for _, n := range nodes {
		if n.Spec.BGP == nil {
			continue
		}
		for _, a := range []string{n.Spec.BGP.IPv4Address, n.Spec.BGP.IPv6Address} {
			if a != "" {
				add(parseClientNet(a))
			}
		}
	}
	slices.SortFunc(f.nets, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	f.nets = slices.Compact(f.nets)
	return f
}

// parseClientNet reads "10.0.0.0/16" or a single address ("10.0.0.5").
func parseClientNet(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// staticNets parses Config.ForwardAllow (validated already).
func (c *Config) staticNets() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.ForwardAllow {
		if p, err := parseClientNet(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
