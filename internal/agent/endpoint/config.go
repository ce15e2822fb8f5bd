// Package endpoint wires one workload interface into the kernel, the way
// Calico's CNI plugin does (see shared/reference/calico.md §2 "Dataplane
// wiring"): a veth pair whose host end is named tby<hash>, has the MAC
// ee:ee:ee:ee:ee:ee, no IP address, proxy ARP/NDP and one link-scope /32
// (/128) route per workload address; the container end carries the
// addresses and routes everything via 169.254.1.1 (IPv4) or the host end's
// link-local address (IPv6).
//
// The host side is the calling process's network namespace; the container
// side is entered only through internal/netns.Do.
//
// It imports netlink, internal/netns and the standard library; it must not
// import the datastore, IPAM, policy, routing or any CNI package.
package endpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// HostIfPrefix starts the name of every host-side workload interface.
const HostIfPrefix = "tby"

// RouteProtocol tags the host routes to workloads (`ip route … proto 84`,
// 'T' for Tabby), so they can be told apart from routes of the kernel
// (0-4), of routing daemons in /etc/iproute2/rt_protos (8-18, 42, 99,
// 186-192) and of Calico's Felix (80). Routes learned over BGP use a
// different protocol number, owned by the routing package.
const RouteProtocol netlink.RouteProtocol = 84

// HostMAC is the MAC address of every host-side workload interface. All
// workloads see the same gateway MAC, so a container's ARP cache never needs
// to change when it moves.
const HostMAC = "ee:ee:ee:ee:ee:ee"

// GatewayIPv4 is the next hop of a container's IPv4 default route. The host
// answers ARP for it by proxy ARP; nothing owns it.
var GatewayIPv4 = netip.MustParseAddr("169.254.1.1")

// GatewayIPv6 is the link-local address of every host-side interface (the
// EUI-64 address of HostMAC); the container's IPv6 default route uses it.
// Add sets it explicitly, with kernel address generation off, so it is
// there at once and whatever the host's addr_gen_mode default is.
var GatewayIPv6 = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")

// DefaultMTU is used when Config.MTU is 0.
const DefaultMTU = 1500

// MTU limits: the IPv4 minimum (RFC 791), the IPv6 minimum (RFC 8200) and
// the largest MTU a veth accepts.
const (
	minMTU     = 68
	minMTUIPv6 = 1280
	maxMTU     = 65535
)

var hostMAC = mustMAC(HostMAC)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// HostIfName returns the host-side interface name for a container
// interface: "tby" and the first 11 hex characters of
// sha256(containerID + "/" + ifName), 14 characters in all.
func HostIfName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return HostIfPrefix + hex.EncodeToString(sum[:])[:11]
}

// Config describes one workload interface.
type Config struct {
	// ContainerID identifies the container (CNI_CONTAINERID).
	ContainerID string
	// IfName is the interface name inside the container (CNI_IFNAME), e.g. eth0.
	IfName string
	// NetNS is the path of the container's network namespace (CNI_NETNS).
	NetNS string
	// Addrs are the workload's addresses. Only the address matters: it is
	// always configured as a /32 or /128.
	Addrs []netip.Prefix
	// MTU of both ends of the veth; 0 means DefaultMTU.
	MTU int
	// AllowIPForwarding leaves IP forwarding on inside the container.
	AllowIPForwarding bool
	// HostIfName overrides the host-side name; it must start with "tby".
	// Empty means HostIfName(ContainerID, IfName).
	HostIfName string
}

// withDefaults returns c with empty fields filled in.
func (c Config) withDefaults() Config {
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.HostIfName == "" {
		c.HostIfName = HostIfName(c.ContainerID, c.IfName)
	}
	return c
}

// Validate checks c; the error names the field and the bad value, as in
// "config MTU 70000: must be between 68 and 65535".
func (c Config) Validate() error {
	if c.ContainerID == "" {
		return fmt.Errorf("config ContainerID: must not be empty")
	}
	if err := validIfName(c.IfName); err != nil {
		return fmt.Errorf("config IfName: %w", err)
	}
	if c.NetNS == "" {
		return fmt.Errorf("config NetNS: must not be empty")
	}
	if c.HostIfName != "" {
		if err := validIfName(c.HostIfName); err != nil {
			return fmt.Errorf("config HostIfName: %w", err)
		}
		if !strings.HasPrefix(c.HostIfName, HostIfPrefix) {
			return fmt.Errorf("config HostIfName %q: must start with %q", c.HostIfName, HostIfPrefix)
		}
	}
	if len(c.Addrs) == 0 {
		return fmt.Errorf("config Addrs: at least one address is required")
	}
	seen := map[netip.Addr]bool{}
	hasV6 := false
	for i, p := range c.Addrs {
		a := p.Addr()
		switch {
		case !p.IsValid():
			return fmt.Errorf("config Addrs[%d] %q: not a valid address", i, p)
		case a.Is4In6():
			return fmt.Errorf("config Addrs[%d] %s: IPv4-mapped IPv6 address, give the IPv4 address", i, p)
		case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
			return fmt.Errorf("config Addrs[%d] %s: not a unicast address a workload can use", i, p)
		case seen[a]:
			return fmt.Errorf("config Addrs[%d] %s: duplicate address", i, p)
		}
		seen[a] = true
		hasV6 = hasV6 || a.Is6()
	}
	if c.MTU != 0 {
		if c.MTU < minMTU || c.MTU > maxMTU {
			return fmt.Errorf("config MTU %d: must be between %d and %d", c.MTU, minMTU, maxMTU)
		}
		if hasV6 && c.MTU < minMTUIPv6 {
			return fmt.Errorf("config MTU %d: below the IPv6 minimum %d (Addrs has an IPv6 address)", c.MTU, minMTUIPv6)
		}
	}
	return nil
}

// hostPrefixes returns the addresses as /32 or /128 prefixes.
func (c Config) hostPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.Addrs))
	for _, p := range c.Addrs {
		a := p.Addr()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

func (c Config) families() (v4, v6 bool) {
	for _, p := range c.Addrs {
		if p.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

// validIfName applies the kernel's rules for interface names (dev_valid_name).
func validIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("must not be empty")
	case len(name) > 15:
		return fmt.Errorf("%q: longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q: not a valid interface name", name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("%q: must not contain '/', ':', NUL or white space", name)
	}
	return nil
}

// Result describes a wired interface.
type Result struct {
	HostIfName       string
	HostMAC          string
	ContainerMAC     string
	ContainerIfIndex int
	// Sandbox is the container's netns path (CNI result "sandbox").
	Sandbox string
}

// HostEndpoint is a host-side workload interface found in the kernel.
type HostEndpoint struct {
	Name  string
	Index int
	Up    bool
	// Addrs are the /32 and /128 routes through the interface, sorted.
	Addrs []netip.Prefix
}

// Dataplane is what the agent needs from the endpoint wiring. *Wirer is
// the kernel implementation; endpointtest.Fake is an in-memory one, and
// endpointtest.RunContract checks that both behave alike.
type Dataplane interface {
	// Add wires cfg; on failure nothing it created remains.
	Add(ctx context.Context, cfg Config) (Result, error)
	// Del removes the interface; a missing netns or link is success.
	Del(ctx context.Context, containerID, ifName, netns string) error
	// Check returns an error describing every way cfg's wiring is wrong.
	Check(ctx context.Context, cfg Config) error
	// List returns every host-side workload interface.
	List(ctx context.Context) ([]HostEndpoint, error)
	// DeleteHostIf removes one host-side workload interface by name.
	DeleteHostIf(ctx context.Context, name string) error
}

var _ Dataplane = (*Wirer)(nil)
