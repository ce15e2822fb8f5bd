package endpoint

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netlinkdump"
)

// List returns every host-side workload interface (veths named tby…) in
// the calling namespace with the /32 and /128 routes through it, sorted
// by name. The agent compares it with the endpoints it should have.
func (w *Wirer) List(ctx context.Context) ([]HostEndpoint, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	h, err := newHandle()
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	defer h.Close()
	links, err := netlinkdump.Retry(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: list links: %w", err)
	}
	byIndex := map[int]*HostEndpoint{}
	var out []HostEndpoint
	for _, l := range links {
		a := l.Attrs()
		if _, ok := l.(*netlink.Veth); !ok || !strings.HasPrefix(a.Name, HostIfPrefix) {
			continue
		}
		out = append(out, HostEndpoint{Name: a.Name, Index: a.Index, Up: a.Flags&net.FlagUp != 0})
	}
	for i := range out {
		byIndex[out[i].Index] = &out[i]
	}
	if len(out) == 0 {
		return nil, nil
	}
	routes, err := netlinkdump.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list endpoints: list routes: %w", err)
	}
	for _, r := range routes {
		ep := byIndex[r.LinkIndex]
		if ep == nil {
			continue
		}
		if p := prefixOf(r.Dst); p.IsValid() && p.IsSingleIP() {
			ep.Addrs = append(ep.Addrs, p)
		}
	}
	for i := range out {
		slices.SortFunc(out[i].Addrs, comparePrefix)
		out[i].Addrs = slices.Compact(out[i].Addrs)
	}
	slices.SortFunc(out, func(a, b HostEndpoint) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// DetectMTU returns the MTU of the host's uplink in the calling namespace:
// the interface that holds nodeIP when it is valid, else the interface of
// the IPv4 (then IPv6) default route with the lowest metric. Encapsulation
// overhead is the caller's to subtract.
func DetectMTU(nodeIP netip.Addr) (int, error) {
	h, err := newHandle()
	if err != nil {
		return 0, fmt.Errorf("detect MTU: %w", err)
	}
	defer h.Close()
	if nodeIP.IsValid() {
		addrs, err := netlinkdump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
		if err != nil {
			return 0, fmt.Errorf("detect MTU: list addresses: %w", err)
		}
		for _, a := range addrs {
			if addrOf(a.IP) == nodeIP.Unmap() {
				l, err := h.LinkByIndex(a.LinkIndex)
				if err != nil {
					return 0, fmt.Errorf("detect MTU: interface of %s: %w", nodeIP, err)
				}
				return l.Attrs().MTU, nil
			}
		}
		return 0, fmt.Errorf("detect MTU: node IP %s is not on any interface", nodeIP)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlinkdump.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, fam) })
		if err != nil {
			return 0, fmt.Errorf("detect MTU: list routes: %w", err)
		}
		best, found := netlink.Route{}, false
		for _, r := range routes {
			if !isDefault(r) || r.Type != unix.RTN_UNICAST {
				continue
			}
			if r.LinkIndex == 0 && len(r.MultiPath) > 0 {
				r.LinkIndex = r.MultiPath[0].LinkIndex
			}
			if r.LinkIndex != 0 && (!found || r.Priority < best.Priority) {
				best, found = r, true
			}
		}
		if found {
			l, err := h.LinkByIndex(best.LinkIndex)
			if err != nil {
				return 0, fmt.Errorf("detect MTU: interface of the default route: %w", err)
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, fmt.Errorf("detect MTU: no default route, and no node IP given")
}
