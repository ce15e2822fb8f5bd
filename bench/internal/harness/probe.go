package harness

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/tabbynet/tabby/internal/netns"
)

// Probe reads one namespace's nftables and routes over netlink, without
// entering it and without exec'ing a CLI (cheap enough to poll every few
// milliseconds across 20 hosts).
type Probe struct {
	NS  string
	f   *os.File
	nft *nftables.Conn
	nl  *netlink.Handle
}

// NewProbe opens namespace ns (by name) and registers the close.
func (j *Janitor) NewProbe(ns string) (*Probe, error) {
	f, err := netns.Open(netns.Path(ns))
	if err != nil {
		return nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("nftables in %s: %w", ns, err)
	}
	h, err := netlink.NewHandleAt(vnetns.NsHandle(int(f.Fd())))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	p := &Probe{NS: ns, f: f, nft: c, nl: h}
	j.Defer("probe "+ns, func() error { h.Close(); return f.Close() })
	return p, nil
}

var tabbyTable = &nftables.Table{Name: "tabby", Family: nftables.TableFamilyINet}

// HasChain reports whether table inet tabby has the chain.
func (p *Probe) HasChain(name string) bool {
	c, err := p.nft.ListChain(tabbyTable, name)
	return err == nil && c != nil
}

// CountChains counts the chains of inet tabby whose name has prefix.
func (p *Probe) CountChains(prefix string) (int, error) {
	cs, err := p.nft.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cs {
		if c.Table != nil && c.Table.Name == "tabby" && strings.HasPrefix(c.Name, prefix) {
			n++
		}
	}
	return n, nil
}

// SetContaining returns the selector set (s4-…) of inet tabby that holds
// addr, or nil. (Set names are hashes of the selector; finding the set by
// a member keeps the bench independent of how they are computed.)
func (p *Probe) SetContaining(addr netip.Addr) (*nftables.Set, error) {
	sets, err := p.nft.GetSets(tabbyTable)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if strings.HasPrefix(s.Name, "s4-") && p.SetHas(s, addr) {
			return s, nil
		}
	}
	return nil, nil
}

// SetHas reports whether set holds addr.
func (p *Probe) SetHas(s *nftables.Set, addr netip.Addr) bool {
	els, err := p.nft.GetSetElements(s)
	if err != nil {
		return false
	}
	want := addr.AsSlice()
	for _, e := range els {
		if !e.IntervalEnd && bytes.Equal(e.Key, want) {
			return true
		}
	}
	return false
}

// SetElements counts the elements (interval starts) of the sets whose
// name has prefix.
func (p *Probe) SetElements(prefix string) (int, error) {
	sets, err := p.nft.GetSets(tabbyTable)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range sets {
		if !strings.HasPrefix(s.Name, prefix) {
			continue
		}
		els, err := p.nft.GetSetElements(s)
		if err != nil {
			return 0, err
		}
		for _, e := range els {
			if !e.IntervalEnd {
				n++
			}
		}
	}
	return n, nil
}

// HasRoute reports whether the main table has a route to exactly dst.
func (p *Probe) HasRoute(dst netip.Prefix) bool {
	rs, err := p.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(dst)}, netlink.RT_FILTER_DST)
	return err == nil && len(rs) > 0
}

// LearnedRoutes lists the destinations inside pool of the routes that go
// via a gateway (routes to other hosts' blocks).
func (p *Probe) LearnedRoutes(pool netip.Prefix) ([]netip.Prefix, error) {
	rs, err := p.nl.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil || r.Gw == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if ok && pool.Contains(a) {
			out = append(out, netip.PrefixFrom(a, ones))
		}
	}
	return out, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().As4()
	return &net.IPNet{IP: net.IP(a[:]), Mask: net.CIDRMask(p.Bits(), 32)}
}
