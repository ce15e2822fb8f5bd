package endpoint

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/netlinkdump"
	"github.com/tabbynet/tabby/internal/netns"
)

// Check verifies that cfg is wired as Add wires it: the host interface
// (type, MAC, up, MTU, no IPv4 address, sysctls), the host routes, and in
// the container the interface, its peer, addresses, routes and sysctls. The
// error lists every problem found.
func (w *Wirer) Check(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("check endpoint: %w", err)
	}
	cfg = cfg.withDefaults()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("check endpoint %s: %w", cfg.HostIfName, err)
	}
	problems, hostIndex, err := checkHost(cfg)
	if err != nil {
		return fmt.Errorf("check endpoint %s: %w", cfg.HostIfName, err)
	}
	if !netns.Exists(cfg.NetNS) {
		problems = append(problems, fmt.Sprintf("container netns %s does not exist", cfg.NetNS))
	} else {
		err := netns.Do(cfg.NetNS, func() error {
			p, err := checkContainer(cfg, hostIndex)
			problems = append(problems, p...)
			return err
		})
		if err != nil {
			return fmt.Errorf("check endpoint %s: %w", cfg.HostIfName, err)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("check endpoint %s (container %s %s): %s",
			cfg.HostIfName, cfg.ContainerID, cfg.IfName, strings.Join(problems, "; "))
	}
	return nil
}

// checkHost returns the problems on the host side and the host interface's
// index (0 if it is missing). err is for failures to look.
func checkHost(cfg Config) (problems []string, index int, err error) {
	h, err := newHandle()
	if err != nil {
		return nil, 0, err
	}
	defer h.Close()
	name := cfg.HostIfName
	link, err := linkByName(h, name)
	if err != nil {
		return nil, 0, err
	}
	if link == nil {
		return []string{fmt.Sprintf("host interface %s does not exist", name)}, 0, nil
	}
	a := link.Attrs()
	if _, ok := link.(*netlink.Veth); !ok {
		problems = append(problems, fmt.Sprintf("host interface %s is a %s, want veth", name, link.Type()))
	}
	if got := a.HardwareAddr.String(); got != HostMAC {
		problems = append(problems, fmt.Sprintf("host interface %s has MAC %s, want %s", name, got, HostMAC))
	}
	if a.Flags&net.FlagUp == 0 {
		problems = append(problems, fmt.Sprintf("host interface %s is down", name))
	}
	if a.MTU != cfg.MTU {
		problems = append(problems, fmt.Sprintf("host interface %s has MTU %d, want %d", name, a.MTU, cfg.MTU))
	}
	addrs, err := netlinkdump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, 0, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	v4, v6 := cfg.families()
	hasLL := false
	for _, ad := range addrs {
		ip := addrOf(ad.IP)
		switch {
		case ip == GatewayIPv6:
			hasLL = true
		case ip.Is6() && ip.IsLinkLocalUnicast():
			// a link-local address is harmless
		default:
			problems = append(problems, fmt.Sprintf("host interface %s has address %s, want none", name, ad.IPNet))
		}
	}
	if v6 && !hasLL {
		problems = append(problems, fmt.Sprintf("host interface %s lacks link-local %s", name, GatewayIPv6))
	}
	problems = append(problems, sysctlProblems("host", hostSysctls(name, v4, v6))...)
	for _, p := range cfg.hostPrefixes() {
		rs, err := routesTo(h, p)
		if err != nil {
			return nil, 0, err
		}
		i := slices.IndexFunc(rs, func(r netlink.Route) bool { return r.LinkIndex == a.Index })
		switch {
		case i >= 0:
		case len(rs) > 0:
			problems = append(problems, fmt.Sprintf("host route to %s is on %s, want %s", p, describeRouteDev(h, rs[0]), name))
		default:
			problems = append(problems, fmt.Sprintf("host route to %s dev %s is missing", p, name))
		}
	}
	return problems, a.Index, nil
}

// checkContainer runs inside the container namespace.
func checkContainer(cfg Config, hostIndex int) (problems []string, err error) {
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	name := cfg.IfName
	link, err := linkByName(h, name)
	if err != nil {
		return nil, err
	}
	if link == nil {
		return []string{fmt.Sprintf("container interface %s does not exist in %s", name, cfg.NetNS)}, nil
	}
	a := link.Attrs()
	if _, ok := link.(*netlink.Veth); !ok {
		problems = append(problems, fmt.Sprintf("container interface %s is a %s, want veth", name, link.Type()))
	}
	if hostIndex != 0 && a.ParentIndex != hostIndex {
		problems = append(problems, fmt.Sprintf("container interface %s is paired with interface index %d, want %s (index %d)",
			name, a.ParentIndex, cfg.HostIfName, hostIndex))
	}
	if a.Flags&net.FlagUp == 0 {
		problems = append(problems, fmt.Sprintf("container interface %s is down", name))
	}
	if a.MTU != cfg.MTU {
		problems = append(problems, fmt.Sprintf("container interface %s has MTU %d, want %d", name, a.MTU, cfg.MTU))
	}
	addrs, err := netlinkdump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	have := map[netip.Prefix]bool{}
	for _, ad := range addrs {
		have[prefixOf(ad.IPNet)] = true
	}
	for _, p := range cfg.hostPrefixes() {
		if !have[p] {
			problems = append(problems, fmt.Sprintf("container interface %s lacks address %s", name, p))
		}
	}
	routes, err := netlinkdump.Retry(func() ([]netlink.Route, error) { return h.RouteList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", name, err)
	}
	has := func(match func(netlink.Route) bool) bool { return slices.ContainsFunc(routes, match) }
	v4, v6 := cfg.families()
	if v4 {
		gw := netip.PrefixFrom(GatewayIPv4, 32)
		if !has(func(r netlink.Route) bool { return prefixOf(r.Dst) == gw && r.Scope == netlink.SCOPE_LINK }) {
			problems = append(problems, fmt.Sprintf("container route %s scope link dev %s is missing", gw, name))
		}
		if !has(func(r netlink.Route) bool { return isDefault(r) && addrOf(r.Gw) == GatewayIPv4 }) {
			problems = append(problems, fmt.Sprintf("container default route via %s dev %s is missing", GatewayIPv4, name))
		}
	}
	if v6 && !has(func(r netlink.Route) bool { return isDefault(r) && addrOf(r.Gw) == GatewayIPv6 }) {
		problems = append(problems, fmt.Sprintf("container default route via %s dev %s is missing", GatewayIPv6, name))
	}
	problems = append(problems, sysctlProblems("container", containerSysctls(name, v4, v6, cfg.AllowIPForwarding))...)
	return problems, nil
}
