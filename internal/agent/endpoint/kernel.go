package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netlinkdump"
)

// sysctl is one /proc/sys setting, key relative to /proc/sys.
type sysctl struct{ key, value string }

// hostSysctls are the settings of a host-side interface, as Calico sets
// them (calico.md §2 "Sysctls on the host veth"), plus addr_gen_mode=none
// so that the only link-local address is the one Add sets (GatewayIPv6).
func hostSysctls(name string, v4, v6 bool) []sysctl {
	var out []sysctl
	if v4 {
		c := "net/ipv4/conf/" + name + "/"
		out = append(out,
			sysctl{c + "route_localnet", "1"},
			sysctl{c + "proxy_arp", "1"},
			sysctl{"net/ipv4/neigh/" + name + "/proxy_delay", "0"},
			sysctl{c + "forwarding", "1"},
		)
	}
	if v6 {
		c := "net/ipv6/conf/" + name + "/"
		out = append(out,
			sysctl{c + "disable_ipv6", "0"},
			sysctl{c + "accept_dad", "0"},
			sysctl{c + "addr_gen_mode", "1"}, // none: Add sets GatewayIPv6 itself
			sysctl{c + "accept_ra", "0"},
			sysctl{c + "proxy_ndp", "1"},
			sysctl{c + "forwarding", "1"},
		)
	}
	return out
}

// containerSysctls are the settings inside the container namespace.
func containerSysctls(ifName string, v4, v6, allowForwarding bool) []sysctl {
	fwd := "0"
	if allowForwarding {
		fwd = "1"
	}
	var out []sysctl
	if v4 {
		out = append(out, sysctl{"net/ipv4/ip_forward", fwd})
	}
	if v6 {
		c := "net/ipv6/conf/" + ifName + "/"
		out = append(out,
			sysctl{c + "disable_ipv6", "0"},
			sysctl{c + "accept_dad", "0"},
			sysctl{"net/ipv6/conf/all/forwarding", fwd},
		)
	}
	return out
}

// writeSysctls applies settings in the calling thread's network namespace.
func writeSysctls(settings []sysctl) error {
	for _, s := range settings {
		if err := os.WriteFile("/proc/sys/"+s.key, []byte(s.value), 0o644); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", strings.ReplaceAll(s.key, "/", "."), s.value, err)
		}
	}
	return nil
}

// sysctlProblems describes every setting whose value differs.
func sysctlProblems(where string, settings []sysctl) []string {
	var out []string
	for _, s := range settings {
		name := strings.ReplaceAll(s.key, "/", ".")
		b, err := os.ReadFile("/proc/sys/" + s.key)
		if err != nil {
			out = append(out, fmt.Sprintf("%s sysctl %s: %v", where, name, err))
			continue
		}
		if got := strings.TrimSpace(string(b)); got != s.value {
			out = append(out, fmt.Sprintf("%s sysctl %s is %s, want %s", where, name, got, s.value))
		}
	}
	return out
}

// newHandle opens a netlink route socket in the calling thread's namespace.
// The socket stays in that namespace whichever thread uses it later.
func newHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	return h, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// linkByName returns the link, or nil if there is none.
func linkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up interface %s: %w", name, err)
	}
	return l, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ipOf(a netip.Addr) net.IP { return a.AsSlice() }

// prefixOf converts a route destination; nil (a default route) is invalid.
func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func isDefault(r netlink.Route) bool {
	return r.Dst == nil || prefixOf(r.Dst).Bits() == 0
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// routesTo lists the main-table routes whose destination is exactly p.
func routesTo(h *netlink.Handle, p netip.Prefix) ([]netlink.Route, error) {
	rs, err := netlinkdump.Retry(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(family(p.Addr()), &netlink.Route{Dst: ipNet(p)}, netlink.RT_FILTER_DST)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes to %s: %w", p, err)
	}
	return rs, nil
}

// describeRouteDev names the device (or type) of a route for error messages.
func describeRouteDev(h *netlink.Handle, r netlink.Route) string {
	switch r.Type { // IPv6 reports these with dev lo
	case unix.RTN_BLACKHOLE:
		return "a blackhole route"
	case unix.RTN_UNREACHABLE:
		return "an unreachable route"
	case unix.RTN_PROHIBIT:
		return "a prohibit route"
	}
	if r.LinkIndex == 0 {
		return "a route without interface"
	}
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		return "interface " + l.Attrs().Name
	}
	return fmt.Sprintf("interface index %d", r.LinkIndex)
}
