package harness

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

// Probe reads one namespace's nftables and routes over netlink, without
// entering it and without exec'ing a CLI (cheap enough to poll every few
// milliseconds across 20 hosts).
type Probe struct {
	NS string
	// AgentHTTP is the address of the agent's HTTP API in NS (for
	// Policies); set by whoever started the agent.
	AgentHTTP string
	f         *os.File
	nft       *nftables.Conn
	nl        *netlink.Handle
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

// Policies returns how many policies and profiles the agent in NS has in
// its programmed table (its tabby_agent_policy_table{what="policies"}
// gauge). The flat table inlines policies, so chains do not tell.
func (p *Probe) Policies() (int, error) { return p.tableGauge("policies") }

// Rules returns the number of rules in the agent's programmed table.
func (p *Probe) Rules() (int, error) { return p.tableGauge("rules") }

func (p *Probe) tableGauge(what string) (int, error) {
	if p.AgentHTTP == "" {
		return 0, fmt.Errorf("probe %s: no agent HTTP address", p.NS)
	}
	resp, err := lab.HTTPClientIn(p.NS).Get("http://" + p.AgentHTTP + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, `tabby_agent_policy_table{what="`+what+`"} `); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(n), err
		}
	}
	return 0, nil // not synced yet
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
		if isSelectorSet(s.Name) && p.SetHas(s, addr) {
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

// SetElements counts the elements (interval starts) of the IPv4 selector
// sets (isSelectorSet).
func (p *Probe) SetElements() (int, error) {
	sets, err := p.nft.GetSets(tabbyTable)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range sets {
		if !isSelectorSet(s.Name) {
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

// isSelectorSet: the IPv4 selector sets (s4-…) and the unions the flat
// table merges some of them into (u4-…).
func isSelectorSet(name string) bool {
	return strings.HasPrefix(name, "s4-") || strings.HasPrefix(name, "u4-")
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
