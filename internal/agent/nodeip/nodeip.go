// Package nodeip finds the address a node uses on its network, with the
// same methods as Calico's IP autodetection: first-found, interface=REGEX,
// skip-interface=REGEX, cidr=CIDR[,CIDR…] and can-reach=ADDR. It reads the
// calling process's network namespace through netlink and changes nothing.
package nodeip

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
)

// skipDefault are interfaces first-found never picks: container, bridge and
// tunnel devices (ours and other networks').
var skipDefault = regexp.MustCompile(`^(lo|tby.*|tabby.*|vxlan\..*|tunl.*|docker.*|cbr.*|dummy.*|virbr.*|lxcbr.*|veth.*|cali.*|flannel.*|kube-ipvs.*|cni.*|cilium.*|weave.*)$`)

// Method is a parsed detection method.
type Method struct {
	kind  string // first-found, interface, skip-interface, cidr, can-reach
	re    *regexp.Regexp
	cidrs []netip.Prefix
	dest  netip.Addr
}

// Parse reads a method string such as "interface=eth.*".
func Parse(s string) (Method, error) {
	if s == "" || s == "first-found" {
		return Method{kind: "first-found"}, nil
	}
	kind, arg, ok := strings.Cut(s, "=")
	if !ok || arg == "" {
		return Method{}, fmt.Errorf("node IP detection method %q: want first-found, interface=REGEX, skip-interface=REGEX, cidr=CIDR or can-reach=ADDR", s)
	}
	m := Method{kind: kind}
	switch kind {
	case "interface", "skip-interface":
		re, err := regexp.Compile("^(" + strings.ReplaceAll(arg, ",", "|") + ")$")
		if err != nil {
			return Method{}, fmt.Errorf("node IP detection method %q: bad regular expression: %w", s, err)
		}
		m.re = re
	case "cidr":
		for _, c := range strings.Split(arg, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				return Method{}, fmt.Errorf("node IP detection method %q: %q is not a CIDR", s, c)
			}
			m.cidrs = append(m.cidrs, p.Masked())
		}
	case "can-reach":
		a, err := netip.ParseAddr(arg)
		if err != nil {
			if ips, lerr := net.LookupIP(arg); lerr == nil && len(ips) > 0 {
				a, _ = netip.AddrFromSlice(ips[0])
				a = a.Unmap()
			} else {
				return Method{}, fmt.Errorf("node IP detection method %q: %q is not an address", s, arg)
			}
		}
		m.dest = a
	default:
		return Method{}, fmt.Errorf("node IP detection method %q: unknown method %q", s, kind)
	}
	return m, nil
}

// String returns the method as written.
func (m Method) String() string {
	switch m.kind {
	case "interface", "skip-interface":
		return m.kind + "=" + strings.TrimSuffix(strings.TrimPrefix(m.re.String(), "^("), ")$")
	case "cidr":
		var s []string
		for _, c := range m.cidrs {
			s = append(s, c.String())
		}
		return "cidr=" + strings.Join(s, ",")
	case "can-reach":
		return "can-reach=" + m.dest.String()
	}
	return "first-found"
}

// Candidate is one address on one interface.
type Candidate struct {
	Iface  string
	Prefix netip.Prefix // the address with its subnet length
}

// Detect finds the node's address of the given family (4 or 6).
func Detect(m Method, family int) (netip.Prefix, error) {
	if m.kind == "can-reach" {
		return canReach(m.dest)
	}
	cands, err := candidates(family)
	if err != nil {
		return netip.Prefix{}, err
	}
	p, ok := Choose(m, cands)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("node IP detection %s found no IPv%d address (looked at %d addresses)", m, family, len(cands))
	}
	return p, nil
}

// Choose applies a method to a list of candidates; it is pure, for tests.
func Choose(m Method, cands []Candidate) (netip.Prefix, bool) {
	for _, c := range cands {
		switch m.kind {
		case "first-found":
			if skipDefault.MatchString(c.Iface) {
				continue
			}
		case "interface":
			if !m.re.MatchString(c.Iface) {
				continue
			}
		case "skip-interface":
			if m.re.MatchString(c.Iface) || skipDefault.MatchString(c.Iface) {
				continue
			}
		case "cidr":
			in := false
			for _, n := range m.cidrs {
				in = in || n.Contains(c.Prefix.Addr())
			}
			if !in {
				continue
			}
		}
		return c.Prefix, true
	}
	return netip.Prefix{}, false
}

func candidates(family int) ([]Candidate, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	fam := netlink.FAMILY_V4
	if family == 6 {
		fam = netlink.FAMILY_V6
	}
	var out []Candidate
	for _, l := range links {
		if l.Attrs().OperState == netlink.OperDown || l.Attrs().Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := netlink.AddrList(l, fam)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !ip.IsGlobalUnicast() {
				continue
			}
			ones, _ := a.Mask.Size()
			out = append(out, Candidate{Iface: l.Attrs().Name, Prefix: netip.PrefixFrom(ip, ones)})
		}
	}
	return out, nil
}

// canReach asks the kernel which source address it would use towards dest,
// then finds that address's prefix length on its interface.
func canReach(dest netip.Addr) (netip.Prefix, error) {
	routes, err := netlink.RouteGet(dest.AsSlice())
	if err != nil || len(routes) == 0 {
		return netip.Prefix{}, fmt.Errorf("node IP detection can-reach=%s: no route: %v", dest, err)
	}
	src, ok := netip.AddrFromSlice(routes[0].Src)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("node IP detection can-reach=%s: the route has no source address", dest)
	}
	src = src.Unmap()
	family := 4
	if src.Is6() {
		family = 6
	}
	cands, err := candidates(family)
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, c := range cands {
		if c.Prefix.Addr() == src {
			return c.Prefix, nil
		}
	}
	bits := 32
	if family == 6 {
		bits = 128
	}
	return netip.PrefixFrom(src, bits), nil
}
