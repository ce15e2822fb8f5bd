package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// nsLink is a netlink handle opened inside a namespace (so it only ever
// sees and changes that namespace) and the namespace's file.
type nsLink struct {
	name string
	path string
	h    *netlink.Handle
	fd   *os.File
}

func openNSLink(name string) (*nsLink, error) {
	path := netns.Path(name)
	fd, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	var h *netlink.Handle
	err = netns.Do(path, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return &nsLink{name: name, path: path, h: h, fd: fd}, nil
}

func (n *nsLink) close() {
	if n == nil {
		return
	}
	n.h.Close()
	n.fd.Close()
}

// up sets a link of this namespace up.
func (n *nsLink) up(name string) error {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", n.name, name, err)
	}
	if err := n.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: set %s up: %w", n.name, name, err)
	}
	return nil
}

// addr gives a link of this namespace an address; an IPv6 one without
// duplicate address detection (the lab plans its addresses, and a
// tentative address would delay the datastore and the agents).
// An invalid prefix (no such address in this lab) is skipped.
func (n *nsLink) addr(name string, p netip.Prefix) error {
	if !p.IsValid() {
		return nil
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", n.name, name, err)
	}
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		return err
	}
	if p.Addr().Is6() {
		a.Flags |= unix.IFA_F_NODAD
	}
	if err := n.h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("%s: add %s to %s: %w", n.name, p, name, err)
	}
	return nil
}

// sysctl writes /proc/sys/KEY inside the namespace.
func (n *nsLink) sysctl(key, val string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	err := netns.Do(n.path, func() error { return os.WriteFile(path, []byte(val), 0o644) })
	if err != nil {
		return fmt.Errorf("%s: sysctl %s=%s: %w", n.name, key, val, err)
	}
	return nil
}

// veth creates a veth pair with end a in n and end b in namespace peer.
// Neither end ever exists in another namespace.
func (n *nsLink) veth(a string, peer *nsLink, b string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: a},
		PeerName:      b,
		PeerNamespace: netlink.NsFd(int(peer.fd.Fd())),
	}
	if err := n.h.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s (%s) – %s (%s): %w", a, n.name, b, peer.name, err)
	}
	return nil
}

// buildFabric creates the lab's namespaces and wires them as planned.
// It creates namespaces in the order of p.Namespaces(); what it made is
// removed by teardown whether or not it finished.
func buildFabric(p *Plan) error {
	links := map[string]*nsLink{}
	defer func() {
		for _, l := range links {
			l.close()
		}
	}()
	for _, name := range p.Namespaces() {
		if _, err := netns.Create(name); err != nil {
			return err
		}
		l, err := openNSLink(name)
		if err != nil {
			return err
		}
		links[name] = l
		if err := l.up("lo"); err != nil {
			return err
		}
	}
	fab := links[p.Fabric]
	for _, rk := range p.Racks {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: rk.Bridge}}
		if err := fab.h.LinkAdd(br); err != nil {
			return fmt.Errorf("%s: create bridge %s: %w", fab.name, rk.Bridge, err)
		}
		if err := fab.up(rk.Bridge); err != nil {
			return err
		}
	}
	if p.Router == nil {
		// One rack: the bridge itself is the hosts' gateway.
		rk := p.Racks[0]
		if err := fab.addr(rk.Bridge, prefixOf(rk.Gateway, rk.Subnet.Bits())); err != nil {
			return err
		}
		if rk.Subnet6.IsValid() {
			if err := fab.addr(rk.Bridge, prefixOf(rk.Gateway6, rk.Subnet6.Bits())); err != nil {
				return err
			}
		}
	} else {
		rt := links[p.Router.Namespace]
		if err := rt.sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
		if p.Racks[0].Subnet6.IsValid() {
			if err := rt.sysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
				return err
			}
		}
		for _, leg := range p.Router.Legs {
			if err := attach(fab, p.Racks[leg.Rack-1].Bridge, leg.FabricLink, rt, leg.Link); err != nil {
				return err
			}
			if err := rt.addr(leg.Link, leg.IP); err != nil {
				return err
			}
			if err := rt.addr(leg.Link, leg.IP6); err != nil {
				return err
			}
			if err := rt.up(leg.Link); err != nil {
				return err
			}
		}
	}
	for _, node := range append([]Node{p.Master}, p.Hosts...) {
		nl := links[node.Namespace]
		if err := attach(fab, p.Racks[node.Rack-1].Bridge, node.FabricLink, nl, node.Uplink); err != nil {
			return err
		}
		if err := nl.addr(node.Uplink, node.IP); err != nil {
			return err
		}
		if err := nl.addr(node.Uplink, node.IP6); err != nil {
			return err
		}
		if err := nl.up(node.Uplink); err != nil {
			return err
		}
		if err := nl.h.RouteAdd(&netlink.Route{Gw: net.IP(node.Gateway.AsSlice())}); err != nil {
			return fmt.Errorf("%s: default route via %s: %w", nl.name, node.Gateway, err)
		}
		if node.Gateway6.IsValid() {
			up, err := nl.h.LinkByName(node.Uplink)
			if err != nil {
				return fmt.Errorf("%s: find %s: %w", nl.name, node.Uplink, err)
			}
			r := &netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.IP(node.Gateway6.AsSlice()), Family: netlink.FAMILY_V6}
			if err := nl.h.RouteAdd(r); err != nil {
				return fmt.Errorf("%s: IPv6 default route via %s: %w", nl.name, node.Gateway6, err)
			}
		}
		if node.Type == TypeAgent {
			// A host forwards for its containers.
			if err := nl.sysctl("net.ipv4.ip_forward", "1"); err != nil {
				return err
			}
			if node.IP6.IsValid() {
				if err := nl.sysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// attach connects namespace peer to bridge br of the fabric through a
// veth (fabLink on the bridge, peerLink in peer).
func attach(fab *nsLink, br, fabLink string, peer *nsLink, peerLink string) error {
	if err := fab.veth(fabLink, peer, peerLink); err != nil {
		return err
	}
	l, err := fab.h.LinkByName(fabLink)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", fab.name, fabLink, err)
	}
	b, err := fab.h.LinkByName(br)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", fab.name, br, err)
	}
	if err := fab.h.LinkSetMaster(l, b); err != nil {
		return fmt.Errorf("%s: add %s to %s: %w", fab.name, fabLink, br, err)
	}
	return fab.up(fabLink)
}

// labNamespaces lists the existing namespaces of lab name (infrastructure
// and containers), whatever created them.
func labNamespaces(name string) ([]string, error) {
	entries, err := os.ReadDir(netns.RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	prefix := NamespacePrefix(name)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// setLoopbackUp brings lo up in a fresh container namespace (what a runtime
// does, with the loopback plugin or by itself as Mesos does).
func setLoopbackUp(ns string) error {
	l, err := openNSLink(ns)
	if err != nil {
		return err
	}
	defer l.close()
	return l.up("lo")
}
