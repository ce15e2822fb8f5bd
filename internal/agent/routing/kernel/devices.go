package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/netlinkdump"
)

// defaultUplinkMTU is assumed when the node address is on no local link.
const defaultUplinkMTU = 1500

// uplink finds the link holding addr (nil when none does).
func (d *Driver) uplink(addr netip.Addr) (netlink.Link, error) {
	if !addr.IsValid() {
		return nil, nil
	}
	addrs, err := netlinkdump.Retry(func() ([]netlink.Addr, error) { return d.h.AddrList(nil, family(addr)) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if addrOf(a.IP) == addr {
			l, err := d.h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("look up the link of %s: %w", addr, err)
			}
			return l, nil
		}
	}
	return nil, nil
}

func (d *Driver) deviceMTU(want int, up netlink.Link, overhead int) int {
	if want != 0 {
		return want
	}
	if up != nil && up.Attrs().MTU > 0 {
		return up.Attrs().MTU - overhead
	}
	return defaultUplinkMTU - overhead
}

// syncVXLAN creates, repairs or removes the VXLAN device and its FDB and
// neighbor entries.
func (d *Driver) syncVXLAN(ks *routing.KernelState, rep *Report) error {
	want := ks.VXLAN
	name := routing.VXLANDeviceName
	if want != nil {
		name = want.Name
	}
	cur, err := d.h.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if want == nil {
		if cur == nil {
			return nil
		}
		if err := d.h.LinkDel(cur); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		rep.Changes = append(rep.Changes, "delete device "+name)
		return nil
	}
	mac, err := net.ParseMAC(want.MAC)
	if err != nil {
		return fmt.Errorf("%s: MAC %q: %w", name, want.MAC, err)
	}
	up, err := d.uplink(want.LocalIP)
	if err != nil {
		return err
	}
	link := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac, MTU: d.deviceMTU(want.MTU, up, routing.VXLANOverhead)},
		VxlanId:   want.VNI,
		SrcAddr:   want.LocalIP.AsSlice(),
		Port:      want.Port,
		Learning:  false,
	}
	if up != nil {
		link.VtepDevIndex = up.Attrs().Index
	}
	if cur != nil && !vxlanMatches(cur, link) {
		if err := d.h.LinkDel(cur); err != nil {
			return fmt.Errorf("delete %s to recreate it: %w", name, err)
		}
		rep.Changes = append(rep.Changes, "delete device "+name+" (settings differ)")
		cur = nil
	}
	if cur == nil {
		if err := d.h.LinkAdd(link); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("add device %s vxlan id %d port %d", name, want.VNI, want.Port))
		if cur, err = d.h.LinkByName(name); err != nil {
			return fmt.Errorf("look up %s after creating it: %w", name, err)
		}
	}
	if err := d.syncLinkAttrs(cur, link.MTU, mac, rep); err != nil {
		return err
	}
	if err := d.syncTunnelAddr(cur, want.Addr, rep); err != nil {
		return err
	}
	return d.syncVXLANPeers(cur, ks.VXLANPeers, rep)
}

// vxlanMatches compares the settings that cannot change without recreating
// the device.
func vxlanMatches(cur netlink.Link, want *netlink.Vxlan) bool {
	v, ok := cur.(*netlink.Vxlan)
	if !ok {
		return false
	}
	return v.VxlanId == want.VxlanId && v.Port == want.Port && v.Learning == want.Learning &&
		v.SrcAddr.Equal(want.SrcAddr) && (want.VtepDevIndex == 0 || v.VtepDevIndex == want.VtepDevIndex)
}

// syncLinkAttrs sets MTU, MAC (when given) and up state.
func (d *Driver) syncLinkAttrs(l netlink.Link, mtu int, mac net.HardwareAddr, rep *Report) error {
	a := l.Attrs()
	if mtu > 0 && a.MTU != mtu {
		if err := d.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU of %s to %d: %w", a.Name, mtu, err)
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("set %s mtu %d", a.Name, mtu))
	}
	if mac != nil && !bytes.Equal(a.HardwareAddr, mac) {
		if err := d.h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("set MAC of %s to %s: %w", a.Name, mac, err)
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("set %s address %s", a.Name, mac))
	}
	if a.Flags&net.FlagUp == 0 {
		if err := d.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", a.Name, err)
		}
		rep.Changes = append(rep.Changes, "set "+a.Name+" up")
	}
	return nil
}

// syncTunnelAddr leaves exactly addr/32 as the link's IPv4 address.
func (d *Driver) syncTunnelAddr(l netlink.Link, addr netip.Addr, rep *Report) error {
	name := l.Attrs().Name
	addrs, err := netlinkdump.Retry(func() ([]netlink.Addr, error) { return d.h.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", name, err)
	}
	want := netip.PrefixFrom(addr, 32)
	found := false
	for _, a := range addrs {
		p := prefixOf(a.IPNet, netlink.FAMILY_V4)
		if p == want {
			found = true
			continue
		}
		if err := d.h.AddrDel(l, &a); err != nil {
			return fmt.Errorf("remove address %s from %s: %w", p, name, err)
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("remove address %s from %s", p, name))
	}
	if !found && addr.IsValid() {
		if err := d.h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
			return fmt.Errorf("add address %s to %s: %w", want, name, err)
		}
		rep.Changes = append(rep.Changes, fmt.Sprintf("add address %s to %s", want, name))
	}
	return nil
}

// syncVXLANPeers keeps one permanent neighbor (tunnel address → MAC), one
// IPv6 neighbor (link-local tunnel address → MAC) when IPv6 uses VXLAN,
// and one FDB entry (MAC → node address) per remote host, and nothing
// else (the kernel's own multicast IPv6 entries are left alone).
func (d *Driver) syncVXLANPeers(l netlink.Link, peers []routing.VXLANPeer, rep *Report) error {
	idx := l.Attrs().Index
	type entry struct {
		ip  netip.Addr
		mac string
	}
	wantARP, wantND, wantFDB := map[entry]bool{}, map[entry]bool{}, map[entry]bool{}
	var errs []error
	for _, p := range peers {
		mac, err := net.ParseMAC(p.MAC)
		if err != nil {
			errs = append(errs, fmt.Errorf("VXLAN peer %s: MAC %q: %w", p.Node, p.MAC, err))
			continue
		}
		if p.TunnelAddr.IsValid() {
			wantARP[entry{p.TunnelAddr, mac.String()}] = true
		}
		if p.TunnelAddr6.IsValid() {
			wantND[entry{p.TunnelAddr6, mac.String()}] = true
		}
		wantFDB[entry{p.NodeIP, mac.String()}] = true
	}
	for _, kind := range []struct {
		fam  int
		want map[entry]bool
		name string
	}{{unix.AF_INET, wantARP, "neighbor"}, {unix.AF_INET6, wantND, "neighbor"}, {unix.AF_BRIDGE, wantFDB, "fdb entry"}} {
		cur, err := netlinkdump.Retry(func() ([]netlink.Neigh, error) { return d.h.NeighList(idx, kind.fam) })
		if err != nil {
			errs = append(errs, fmt.Errorf("list %ss of %s: %w", kind.name, l.Attrs().Name, err))
			continue
		}
		have := map[entry]bool{}
		for _, n := range cur {
			if n.LinkIndex != idx {
				continue
			}
			e := entry{addrOf(n.IP), n.HardwareAddr.String()}
			if kind.want[e] && n.State&netlink.NUD_PERMANENT != 0 {
				have[e] = true
				continue
			}
			if kind.fam == unix.AF_BRIDGE && !e.ip.IsValid() {
				continue // the kernel's own entries (e.g. the device address)
			}
			if kind.fam == unix.AF_INET6 && (e.ip.IsMulticast() || n.State&netlink.NUD_NOARP != 0) {
				continue // the kernel's multicast entries (ff02::…, NOARP)
			}
			n := n
			if err := d.h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete %s %s %s: %w", kind.name, e.ip, e.mac, err))
				continue
			}
			rep.Changes = append(rep.Changes, fmt.Sprintf("delete %s %s %s", kind.name, e.ip, e.mac))
		}
		for e := range kind.want {
			if have[e] {
				continue
			}
			mac, _ := net.ParseMAC(e.mac)
			n := &netlink.Neigh{LinkIndex: idx, Family: kind.fam, State: netlink.NUD_PERMANENT, IP: e.ip.AsSlice(), HardwareAddr: mac}
			if kind.fam == unix.AF_BRIDGE {
				n.Flags = netlink.NTF_SELF
			}
			if err := d.h.NeighSet(n); err != nil {
				errs = append(errs, fmt.Errorf("set %s %s %s: %w", kind.name, e.ip, e.mac, err))
				continue
			}
			rep.Changes = append(rep.Changes, fmt.Sprintf("set %s %s %s", kind.name, e.ip, e.mac))
		}
	}
	return errors.Join(errs...)
}

// syncIPIP configures tunl0 when wanted. tunl0 is the ipip module's
// fallback device: creating any ipip link loads it; it is never removed.
func (d *Driver) syncIPIP(want *routing.IPIPDevice, rep *Report) error {
	if want == nil {
		return nil
	}
	cur, err := d.h.LinkByName(want.Name)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("look up %s: %w", want.Name, err)
	}
	if cur == nil {
		err := d.h.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: want.Name}})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			if isUnsupported(err) {
				return fmt.Errorf("create %s: %w (%v)", want.Name, ErrIPIPUnsupported, err)
			}
			return fmt.Errorf("create %s: %w", want.Name, err)
		}
		rep.Changes = append(rep.Changes, "add device "+want.Name+" ipip")
		if cur, err = d.h.LinkByName(want.Name); err != nil {
			return fmt.Errorf("look up %s after creating it: %w", want.Name, err)
		}
	}
	if cur.Type() != "ipip" {
		return fmt.Errorf("%s exists but is a %s device, not ipip", want.Name, cur.Type())
	}
	up, err := d.uplink(want.LocalIP)
	if err != nil {
		return err
	}
	if err := d.syncLinkAttrs(cur, d.deviceMTU(want.MTU, up, routing.IPIPOverhead), nil, rep); err != nil {
		return err
	}
	return d.syncTunnelAddr(cur, want.Addr, rep)
}
